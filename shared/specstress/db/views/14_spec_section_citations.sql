CREATE OR REPLACE VIEW spec_section_citations AS
SELECT sc.selection, v.spec_id, v.spec_version, c.anchor, s.position, s.title, s.authority,
       count(*) AS citations,
       count(DISTINCT v.response_id) AS answers,
       count(*) FILTER (WHERE v.decision = 'compliant') AS compliant,
       count(*) FILTER (WHERE v.decision = 'non-compliant') AS non_compliant,
       count(*) FILTER (WHERE v.decision = 'ambiguous') AS ambiguous
FROM verdict_citations c
JOIN verdicts v ON v.verdict_id = c.verdict_id
JOIN scenario_scopes sc ON sc.scenario_id = v.scenario_id
LEFT JOIN spec_sections s
  ON s.spec_id = v.spec_id AND s.spec_version = v.spec_version AND s.anchor = c.anchor
GROUP BY sc.selection, v.spec_id, v.spec_version, c.anchor, s.position, s.title, s.authority;
