CREATE OR REPLACE VIEW judge_verdicts AS
SELECT v.verdict_id, v.response_id, v.scenario_id, v.spec_id, v.spec_version, v.judge,
       r.model_key, v.decision, v.decision <> 'compliant' AS flagged,
       jv.vendor AS judge_vendor, mv.vendor AS model_vendor,
       jv.vendor = mv.vendor AS same_vendor
FROM verdicts v
JOIN responses r ON r.response_id = v.response_id
LEFT JOIN model_vendors jv ON jv.model_key = v.judge
LEFT JOIN model_vendors mv ON mv.model_key = r.model_key;
