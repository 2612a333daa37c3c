CREATE OR REPLACE VIEW figure11_cooccurrence AS
WITH shows AS (
    SELECT DISTINCT selection, taxonomy_version, embedding_key, scenario_id, model_key,
           category_id, category
    FROM answer_value_categories
),
labelled AS (
    SELECT DISTINCT scenario_id, model_key FROM distinctive_values
),
given AS (
    SELECT a.selection, a.taxonomy_version, a.embedding_key, a.model_key AS model_a,
           a.category_id AS category_x_id, a.category AS category_x, b.model_key AS model_b,
           count(*) AS scenarios_a_shows_x
    FROM shows a
    JOIN labelled b ON b.scenario_id = a.scenario_id AND b.model_key <> a.model_key
    GROUP BY 1, 2, 3, 4, 5, 6, 7
),
joint AS (
    SELECT a.selection, a.taxonomy_version, a.embedding_key, a.model_key AS model_a,
           a.category_id AS category_x_id, b.model_key AS model_b,
           b.category_id AS category_y_id, count(*) AS scenarios
    FROM shows a
    JOIN shows b
      ON b.scenario_id = a.scenario_id AND b.selection = a.selection
     AND b.taxonomy_version = a.taxonomy_version AND b.embedding_key = a.embedding_key
     AND b.model_key <> a.model_key
    GROUP BY 1, 2, 3, 4, 5, 6, 7
)
SELECT g.selection, g.taxonomy_version, g.embedding_key, g.model_a, g.category_x, g.model_b,
       y.name AS category_y, g.scenarios_a_shows_x,
       coalesce(j.scenarios, 0) AS scenarios_b_shows_y,
       coalesce(j.scenarios, 0)::float8 / g.scenarios_a_shows_x AS probability
FROM given g
JOIN "values" y ON y.taxonomy_version = g.taxonomy_version AND y.level = 2
LEFT JOIN joint j
  ON j.selection = g.selection AND j.taxonomy_version = g.taxonomy_version
 AND j.embedding_key = g.embedding_key AND j.model_a = g.model_a
 AND j.category_x_id = g.category_x_id AND j.model_b = g.model_b
 AND j.category_y_id = y.value_id;
