CREATE OR REPLACE VIEW response_compliance AS
SELECT v.response_id,
       v.scenario_id,
       r.model_key,
       v.spec_id,
       v.spec_version,
       count(*) AS judges,
       count(*) FILTER (WHERE v.decision <> 'compliant') AS flags,
       count(*) FILTER (WHERE v.decision <> 'compliant') * 2 > count(*) AS majority_flag,
       count(*) FILTER (WHERE v.decision <> 'compliant') >= 1 AS any_flag
FROM verdicts v
JOIN responses r ON r.response_id = v.response_id
GROUP BY v.response_id, v.scenario_id, r.model_key, v.spec_id, v.spec_version;
