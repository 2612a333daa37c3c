CREATE OR REPLACE VIEW judge_flag_rates AS
SELECT sc.selection, j.spec_id, j.spec_version, j.judge,
       count(*) AS verdicts,
       count(*) FILTER (WHERE j.flagged) AS flagged,
       count(*) FILTER (WHERE j.decision = 'non-compliant') AS non_compliant,
       count(*) FILTER (WHERE j.decision = 'ambiguous') AS ambiguous,
       avg(j.flagged::int)::float8 AS flag_rate
FROM judge_verdicts j
JOIN scenario_scopes sc ON sc.scenario_id = j.scenario_id
GROUP BY sc.selection, j.spec_id, j.spec_version, j.judge;
