CREATE OR REPLACE VIEW table2_samples AS
WITH subsets AS (
    SELECT sc.selection, 'random'::text AS subset, NULL::varchar(64) AS model_set, sc.scenario_id
    FROM scenario_scopes sc
    UNION ALL
    SELECT sc.selection, 'high_disagreement'::text, d.model_set, sc.scenario_id
    FROM disagreement d
    JOIN scenario_scopes sc ON sc.scenario_id = d.scenario_id
    WHERE d.high
), ranked AS (
    SELECT s.selection, s.subset, s.model_set, s.scenario_id,
           row_number() OVER p AS sample_rank,
           count(*) OVER p AS subset_size
    FROM subsets s
    WINDOW p AS (PARTITION BY s.selection, s.subset, s.model_set
                 ORDER BY md5(s.scenario_id), s.scenario_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
), specs AS (
    SELECT DISTINCT spec_id, spec_version FROM verdicts
)
SELECT r.selection, r.subset, r.model_set, p.spec_id, p.spec_version, r.scenario_id,
       r.sample_rank, r.subset_size,
       c.scenario_id IS NOT NULL AS judged,
       coalesce(c.frequent_noncompliance_majority, false) AS all_fail_majority,
       coalesce(c.frequent_noncompliance_any, false) AS all_fail_any
FROM ranked r
CROSS JOIN specs p
LEFT JOIN scenario_compliance c
  ON c.scenario_id = r.scenario_id AND c.spec_id = p.spec_id AND c.spec_version = p.spec_version;
