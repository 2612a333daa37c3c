CREATE OR REPLACE VIEW figure10_value_categories AS
WITH shows AS (
    SELECT DISTINCT sc.selection, c.taxonomy_version, c.embedding_key, dv.scenario_id,
           dv.response_id, dv.model_key, c.category_id, c.category
    FROM distinctive_values dv
    JOIN value_categories c
      ON c.value_hash = encode(sha256(convert_to(dv.value, 'UTF8')), 'hex')
    JOIN scenario_scopes sc ON sc.scenario_id = dv.scenario_id
)
SELECT selection, taxonomy_version, embedding_key, model_key, category_id, category,
       count(DISTINCT response_id) AS responses
FROM shows
GROUP BY selection, taxonomy_version, embedding_key, model_key, category_id, category;
