CREATE OR REPLACE VIEW figure4_refusal_types AS
WITH x AS (
    SELECT sc.selection, d.model_set, subset.scenarios, r.model_key, r.refusal_type, r.refusal
    
    FROM refusal_types r
    JOIN disagreement d ON d.scenario_id = r.scenario_id
    JOIN model_set_members s ON s.model_set = d.model_set AND s.model_key = r.model_key
    JOIN scenario_scopes sc ON sc.scenario_id = r.scenario_id
    CROSS JOIN LATERAL (VALUES ('all'::text), ('high'::text)) AS subset(scenarios)
    WHERE subset.scenarios = 'all' OR d.high

)
SELECT x.selection, x.model_set, x.scenarios, x.model_key,
       count(*) AS answers,
       count(*) FILTER (WHERE x.refusal) AS refusals,
       avg(x.refusal::int)::float8 AS refusal_rate,
       count(*) FILTER (WHERE x.refusal_type = 'Full Compliance') AS full_compliance,
       count(*) FILTER (WHERE x.refusal_type = 'Compliance with Minor Additions') AS compliance_with_minor_additions,
       count(*) FILTER (WHERE x.refusal_type = 'Conditional Compliance') AS conditional_compliance,
       count(*) FILTER (WHERE x.refusal_type = 'Partial Compliance with Redirection') AS partial_compliance_with_redirection,
       count(*) FILTER (WHERE x.refusal_type = 'Soft Rejection with Alternatives') AS soft_rejection_with_alternatives,
       count(*) FILTER (WHERE x.refusal_type = 'Firm Rejection with Explanation') AS firm_rejection_with_explanation,
       count(*) FILTER (WHERE x.refusal_type = 'Complete Rejection') AS complete_rejection
FROM x
GROUP BY x.selection, x.model_set, x.scenarios, x.model_key;
