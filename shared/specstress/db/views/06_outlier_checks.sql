CREATE OR REPLACE VIEW outlier_checks AS
WITH positions AS (
    SELECT s.model_set, c.scenario_id, r.model_key, c.value1_position, c.value2_position
    FROM classifications c
    JOIN responses r ON r.response_id = c.response_id
    JOIN model_set_members s ON s.model_key = r.model_key
), counted AS (
    SELECT p.model_set, p.scenario_id, p.model_key, p.value1_position, p.value2_position,
           count(*) OVER w AS members,
           count(*) FILTER (WHERE p.value1_position = 0) OVER w AS value1_at_0,
           count(*) FILTER (WHERE p.value1_position = 1) OVER w AS value1_at_1,
           count(*) FILTER (WHERE p.value1_position = 2) OVER w AS value1_at_2,
           count(*) FILTER (WHERE p.value1_position = 3) OVER w AS value1_at_3,
           count(*) FILTER (WHERE p.value1_position = 4) OVER w AS value1_at_4,
           count(*) FILTER (WHERE p.value1_position = 5) OVER w AS value1_at_5,
           count(*) FILTER (WHERE p.value1_position = 6) OVER w AS value1_at_6,
           count(*) FILTER (WHERE p.value2_position = 0) OVER w AS value2_at_0,
           count(*) FILTER (WHERE p.value2_position = 1) OVER w AS value2_at_1,
           count(*) FILTER (WHERE p.value2_position = 2) OVER w AS value2_at_2,
           count(*) FILTER (WHERE p.value2_position = 3) OVER w AS value2_at_3,
           count(*) FILTER (WHERE p.value2_position = 4) OVER w AS value2_at_4,
           count(*) FILTER (WHERE p.value2_position = 5) OVER w AS value2_at_5,
           count(*) FILTER (WHERE p.value2_position = 6) OVER w AS value2_at_6
    FROM positions p
    WINDOW w AS (PARTITION BY p.model_set, p.scenario_id)
), far AS (
    SELECT c.model_set, c.scenario_id, c.model_key, c.value1_position, c.value2_position,
           c.members,
           c.value1_at_0 * (abs(0 - c.value1_position) >= a.outlier_min_gap)::int
           + c.value1_at_1 * (abs(1 - c.value1_position) >= a.outlier_min_gap)::int
           + c.value1_at_2 * (abs(2 - c.value1_position) >= a.outlier_min_gap)::int
           + c.value1_at_3 * (abs(3 - c.value1_position) >= a.outlier_min_gap)::int
           + c.value1_at_4 * (abs(4 - c.value1_position) >= a.outlier_min_gap)::int
           + c.value1_at_5 * (abs(5 - c.value1_position) >= a.outlier_min_gap)::int
           + c.value1_at_6 * (abs(6 - c.value1_position) >= a.outlier_min_gap)::int AS value1_far,
           c.value2_at_0 * (abs(0 - c.value2_position) >= a.outlier_min_gap)::int
           + c.value2_at_1 * (abs(1 - c.value2_position) >= a.outlier_min_gap)::int
           + c.value2_at_2 * (abs(2 - c.value2_position) >= a.outlier_min_gap)::int
           + c.value2_at_3 * (abs(3 - c.value2_position) >= a.outlier_min_gap)::int
           + c.value2_at_4 * (abs(4 - c.value2_position) >= a.outlier_min_gap)::int
           + c.value2_at_5 * (abs(5 - c.value2_position) >= a.outlier_min_gap)::int
           + c.value2_at_6 * (abs(6 - c.value2_position) >= a.outlier_min_gap)::int AS value2_far,
           ceil(a.outlier_share * (c.members - 1))::int AS required
    FROM counted c
    CROSS JOIN analysis_settings a
)
SELECT f.model_set, f.scenario_id, f.model_key, f.value1_position, f.value2_position,
       f.members, f.value1_far, f.value2_far, f.required,
       f.members >= 3 AND f.value1_far >= f.required AS value1_outlier,
       f.members >= 3 AND f.value2_far >= f.required AS value2_outlier
FROM far f;
