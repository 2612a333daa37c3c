CREATE OR REPLACE VIEW compliance_by_model AS
SELECT sc.selection, c.spec_id, c.spec_version, c.model_key,
       count(*) AS answers_judged,
       count(*) FILTER (WHERE c.majority_flag) AS majority_flagged,
       count(*) FILTER (WHERE c.any_flag) AS any_flagged,
       avg(c.majority_flag::int)::float8 AS majority_rate,
       avg(c.any_flag::int)::float8 AS any_rate
FROM response_compliance c
JOIN scenario_scopes sc ON sc.scenario_id = c.scenario_id
GROUP BY sc.selection, c.spec_id, c.spec_version, c.model_key;
