CREATE OR REPLACE VIEW figure10_value_categories AS
SELECT selection, taxonomy_version, embedding_key, model_key, category_id, category,
       count(DISTINCT response_id) AS responses
FROM answer_value_categories
GROUP BY selection, taxonomy_version, embedding_key, model_key, category_id, category;
