CREATE OR REPLACE VIEW figure6_outliers AS
SELECT sc.selection, o.model_set, o.model_key,
       count(*) AS scenarios,
       count(*) FILTER (WHERE o.value1_outlier OR o.value2_outlier) AS outlier_scenarios,
       count(*) FILTER (WHERE o.value1_outlier) AS value1_outliers,
       count(*) FILTER (WHERE o.value2_outlier) AS value2_outliers,
       avg((o.value1_outlier OR o.value2_outlier)::int)::float8 AS outlier_rate
FROM outlier_checks o
JOIN scenario_scopes sc ON sc.scenario_id = o.scenario_id
GROUP BY sc.selection, o.model_set, o.model_key;
