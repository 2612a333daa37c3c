CREATE OR REPLACE VIEW judge_model_flags AS
WITH flags AS (
    SELECT j.*,
           sum(j.flagged::int) OVER r AS answer_flags,
           count(*) OVER r AS answer_judges
    FROM judge_verdicts j
    WINDOW r AS (PARTITION BY j.response_id, j.spec_id, j.spec_version)
)
SELECT sc.selection, f.spec_id, f.spec_version, f.judge, f.model_key,
       f.judge_vendor, f.model_vendor, f.same_vendor,
       count(*) AS verdicts,
       count(*) FILTER (WHERE f.flagged) AS flagged,
       avg(f.flagged::int)::float8 AS flag_rate,
       count(*) FILTER (WHERE f.answer_judges > 1) AS verdicts_with_other_judges,
       avg((f.answer_flags - f.flagged::int)::float8 / (f.answer_judges - 1))
           FILTER (WHERE f.answer_judges > 1) AS other_judges_flag_rate
FROM flags f
JOIN scenario_scopes sc ON sc.scenario_id = f.scenario_id
GROUP BY sc.selection, f.spec_id, f.spec_version, f.judge, f.model_key,
         f.judge_vendor, f.model_vendor, f.same_vendor;
