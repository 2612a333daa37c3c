CREATE OR REPLACE VIEW scenario_scopes AS
SELECT '*'::text AS selection, s.scenario_id
FROM scenarios s
UNION ALL
SELECT m.selection::text, m.scenario_id
FROM selection_members m
WHERE m.selection <> '*';
