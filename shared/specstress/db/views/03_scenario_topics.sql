CREATE OR REPLACE VIEW scenario_topics AS
SELECT t.scenario_id, x.topic
FROM topic_labels t
CROSS JOIN LATERAL (VALUES
        ('cyber security', t.cyber_security),
        ('biological weapons', t.biological_weapons),
        ('chemical weapons', t.chemical_weapons),
        ('politics', t.politics),
        ('child grooming', t.child_grooming),
        ('mental illness', t.mental_illness),
        ('philosophical reasoning', t.philosophical_reasoning),
        ('ethics & moral reasoning', t.ethics_moral_reasoning)
) AS x(topic, present)
WHERE x.present;
