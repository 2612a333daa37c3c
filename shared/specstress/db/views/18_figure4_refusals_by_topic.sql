CREATE OR REPLACE VIEW figure4_refusals_by_topic AS
SELECT sc.selection, d.model_set, subset.scenarios, r.model_key, t.topic,
       count(*) AS answers,
       count(*) FILTER (WHERE r.refusal) AS refusals,
       avg(r.refusal::int)::float8 AS refusal_rate

    FROM refusal_types r
    JOIN scenario_topics t ON t.scenario_id = r.scenario_id
    JOIN disagreement d ON d.scenario_id = r.scenario_id
    JOIN model_set_members s ON s.model_set = d.model_set AND s.model_key = r.model_key
    JOIN scenario_scopes sc ON sc.scenario_id = r.scenario_id
    CROSS JOIN LATERAL (VALUES ('all'::text), ('high'::text)) AS subset(scenarios)
    WHERE subset.scenarios = 'all' OR d.high

GROUP BY sc.selection, d.model_set, subset.scenarios, r.model_key, t.topic;
