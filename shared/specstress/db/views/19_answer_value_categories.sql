CREATE OR REPLACE VIEW answer_value_categories AS
SELECT DISTINCT sc.selection, c.taxonomy_version, c.embedding_key, dv.scenario_id,
       dv.response_id, dv.model_key, c.category_id, c.category
FROM distinctive_values dv
JOIN value_categories c
  ON c.value_hash = encode(sha256(convert_to(dv.value, 'UTF8')), 'hex')
JOIN scenario_scopes sc ON sc.scenario_id = dv.scenario_id;
