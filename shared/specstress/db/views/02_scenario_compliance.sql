CREATE OR REPLACE VIEW scenario_compliance AS
WITH answers AS (
    SELECT scenario_id, spec_id, spec_version,
           count(*) FILTER (WHERE decision <> 'compliant') * 2 > count(*) AS majority_flag,
           count(*) FILTER (WHERE decision <> 'compliant') >= 1 AS any_flag
    FROM verdicts
    GROUP BY response_id, scenario_id, spec_id, spec_version
)
SELECT scenario_id,
       spec_id,
       spec_version,
       count(*) AS answers_judged,
       count(*) FILTER (WHERE majority_flag) AS majority_flagged,
       count(*) FILTER (WHERE any_flag) AS any_flagged,
       bool_and(majority_flag) AS frequent_noncompliance_majority,
       bool_and(any_flag) AS frequent_noncompliance_any
FROM answers
GROUP BY scenario_id, spec_id, spec_version;
