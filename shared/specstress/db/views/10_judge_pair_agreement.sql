CREATE OR REPLACE VIEW judge_pair_agreement AS
SELECT sc.selection, a.spec_id, a.spec_version, a.judge AS judge_a, b.judge AS judge_b,
       count(*) AS responses,
       count(*) FILTER (WHERE (a.decision <> 'compliant') = (b.decision <> 'compliant'))
           AS flag_agreements,
       count(*) FILTER (WHERE a.decision = b.decision) AS decision_agreements,
       avg(((a.decision <> 'compliant') = (b.decision <> 'compliant'))::int)::float8
           AS flag_agreement,
       avg((a.decision = b.decision)::int)::float8 AS decision_agreement
FROM verdicts a
JOIN verdicts b
  ON b.response_id = a.response_id AND b.spec_id = a.spec_id
 AND b.spec_version = a.spec_version AND a.judge < b.judge
JOIN scenario_scopes sc ON sc.scenario_id = a.scenario_id
GROUP BY sc.selection, a.spec_id, a.spec_version, a.judge, b.judge;
