CREATE OR REPLACE VIEW judge_decision_profiles AS
WITH answers AS (
    SELECT sc.selection, v.spec_id, v.spec_version, v.response_id,
           count(*) FILTER (WHERE v.decision = 'compliant') AS compliant,
           count(*) FILTER (WHERE v.decision = 'non-compliant') AS non_compliant,
           count(*) FILTER (WHERE v.decision = 'ambiguous') AS ambiguous
    FROM verdicts v
    JOIN scenario_scopes sc ON sc.scenario_id = v.scenario_id
    GROUP BY sc.selection, v.spec_id, v.spec_version, v.response_id
)
SELECT selection, spec_id, spec_version, compliant, non_compliant, ambiguous,
       count(*) AS answers
FROM answers
GROUP BY selection, spec_id, spec_version, compliant, non_compliant, ambiguous;
