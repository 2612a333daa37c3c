CREATE OR REPLACE VIEW model_set_members AS
SELECT r.model_set, m.model_key FROM model_set_rules r JOIN models m ON r.member = '*'
UNION
SELECT r.model_set, m.model_key FROM model_set_rules r JOIN models m ON r.member = m.model_key
UNION
SELECT r.model_set, m.model_key
FROM model_set_rules r JOIN models m ON r.member = 'family:' || m.family;
