CREATE OR REPLACE VIEW figure2_noncompliance_by_d AS
WITH bins(bin, bin_label, lower_bound, upper_bound) AS (
    VALUES (1, '[0,1)', 0.0::float8, 1.0::float8),
           (2, '[1,1.5)', 1.0, 1.5),
           (3, '[1.5,2)', 1.5, 2.0),
           (4, '[2,2.5)', 2.0, 2.5),
           (5, '[2.5,3]', 2.5, 3.0)
), judged AS (
    SELECT sc.selection, d.model_set, c.spec_id, c.spec_version, d.disagreement,
           c.frequent_noncompliance_majority, c.frequent_noncompliance_any
    FROM scenario_compliance c
    JOIN disagreement d ON d.scenario_id = c.scenario_id
    JOIN scenario_scopes sc ON sc.scenario_id = c.scenario_id
), groups AS (
    SELECT DISTINCT selection, model_set, spec_id, spec_version FROM judged
)
SELECT g.selection, g.model_set, g.spec_id, g.spec_version, b.bin, b.bin_label,
       b.lower_bound, b.upper_bound,
       count(j.disagreement) AS scenarios,
       count(*) FILTER (WHERE j.frequent_noncompliance_majority) AS frequent_majority,
       count(*) FILTER (WHERE j.frequent_noncompliance_any) AS frequent_any,
       (count(*) FILTER (WHERE j.frequent_noncompliance_majority))::float8
           / nullif(count(j.disagreement), 0) AS majority_rate,
       (count(*) FILTER (WHERE j.frequent_noncompliance_any))::float8
           / nullif(count(j.disagreement), 0) AS any_rate
FROM groups g
CROSS JOIN bins b
LEFT JOIN judged j
  ON j.selection = g.selection AND j.model_set = g.model_set
 AND j.spec_id = g.spec_id AND j.spec_version = g.spec_version
 AND j.disagreement >= b.lower_bound AND (j.disagreement < b.upper_bound OR b.bin = 5)
GROUP BY g.selection, g.model_set, g.spec_id, g.spec_version, b.bin, b.bin_label,
         b.lower_bound, b.upper_bound;
