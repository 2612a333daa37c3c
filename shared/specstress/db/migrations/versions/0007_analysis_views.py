"""Model sets, outliers, judge-ensemble statistics, spec citations and the paper's tables.

Tables: the config mirror (`model_set_rules`, `model_vendors`, `analysis_settings`) that lets
views resolve model sets, vendors and outlier settings; `spec_sections` and `verdict_citations`.
Views are computed from fact rows on every read, so nothing here is ever incremented.

Every aggregated view carries a `selection` column: `*` is every scenario; named selections of
scenarios join in through `scenario_scopes` once their table exists (a later revision redefines
that one view, and every view built on it follows).

Revision ID: 0007
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None

POSITIONS = range(7)

# Three equality joins rather than one join on an OR: the planner then sizes the membership
# right and joins millions of answers by hash instead of by index lookups.
MODEL_SET_MEMBERS = """
CREATE VIEW model_set_members AS
SELECT r.model_set, m.model_key FROM model_set_rules r JOIN models m ON r.member = '*'
UNION
SELECT r.model_set, m.model_key FROM model_set_rules r JOIN models m ON r.member = m.model_key
UNION
SELECT r.model_set, m.model_key
FROM model_set_rules r JOIN models m ON r.member = 'family:' || m.family
"""

SCENARIO_SCOPES = """
CREATE VIEW scenario_scopes AS
SELECT '*'::text AS selection, s.scenario_id
FROM scenarios s
"""

# Positions are 0..6, so "how many others sit at least min_gap away" is a sum over a 7-bin
# histogram of the set's positions on the scenario: one window pass, no pairwise self-join.
_HISTOGRAM = ",\n           ".join(
    f"count(*) FILTER (WHERE p.{value}_position = {k}) OVER w AS {value}_at_{k}"
    for value in ("value1", "value2")
    for k in POSITIONS
)


def _far(value: str) -> str:
    return " + ".join(
        f"c.{value}_at_{k} * (abs({k} - c.{value}_position) >= a.outlier_min_gap)::int"
        for k in POSITIONS
    )


OUTLIER_CHECKS = f"""
CREATE VIEW outlier_checks AS
WITH positions AS (
    SELECT s.model_set, c.scenario_id, r.model_key, c.value1_position, c.value2_position
    FROM classifications c
    JOIN responses r ON r.response_id = c.response_id
    JOIN model_set_members s ON s.model_key = r.model_key
), counted AS (
    SELECT p.model_set, p.scenario_id, p.model_key, p.value1_position, p.value2_position,
           count(*) OVER w AS members,
           {_HISTOGRAM}
    FROM positions p
    WINDOW w AS (PARTITION BY p.model_set, p.scenario_id)
), far AS (
    SELECT c.model_set, c.scenario_id, c.model_key, c.value1_position, c.value2_position,
           c.members,
           {_far("value1")} AS value1_far,
           {_far("value2")} AS value2_far,
           ceil(a.outlier_share * (c.members - 1))::int AS required
    FROM counted c
    CROSS JOIN analysis_settings a
)
SELECT f.model_set, f.scenario_id, f.model_key, f.value1_position, f.value2_position,
       f.members, f.value1_far, f.value2_far, f.required,
       f.members >= 3 AND f.value1_far >= f.required AS value1_outlier,
       f.members >= 3 AND f.value2_far >= f.required AS value2_outlier
FROM far f
"""

FIGURE6_OUTLIERS = """
CREATE VIEW figure6_outliers AS
SELECT sc.selection, o.model_set, o.model_key,
       count(*) AS scenarios,
       count(*) FILTER (WHERE o.value1_outlier OR o.value2_outlier) AS outlier_scenarios,
       count(*) FILTER (WHERE o.value1_outlier) AS value1_outliers,
       count(*) FILTER (WHERE o.value2_outlier) AS value2_outliers,
       avg((o.value1_outlier OR o.value2_outlier)::int)::float8 AS outlier_rate
FROM outlier_checks o
JOIN scenario_scopes sc ON sc.scenario_id = o.scenario_id
GROUP BY sc.selection, o.model_set, o.model_key
"""

JUDGE_VERDICTS = """
CREATE VIEW judge_verdicts AS
SELECT v.verdict_id, v.response_id, v.scenario_id, v.spec_id, v.spec_version, v.judge,
       r.model_key, v.decision, v.decision <> 'compliant' AS flagged,
       jv.vendor AS judge_vendor, mv.vendor AS model_vendor,
       jv.vendor = mv.vendor AS same_vendor
FROM verdicts v
JOIN responses r ON r.response_id = v.response_id
LEFT JOIN model_vendors jv ON jv.model_key = v.judge
LEFT JOIN model_vendors mv ON mv.model_key = r.model_key
"""

JUDGE_FLAG_RATES = """
CREATE VIEW judge_flag_rates AS
SELECT sc.selection, j.spec_id, j.spec_version, j.judge,
       count(*) AS verdicts,
       count(*) FILTER (WHERE j.flagged) AS flagged,
       count(*) FILTER (WHERE j.decision = 'non-compliant') AS non_compliant,
       count(*) FILTER (WHERE j.decision = 'ambiguous') AS ambiguous,
       avg(j.flagged::int)::float8 AS flag_rate
FROM judge_verdicts j
JOIN scenario_scopes sc ON sc.scenario_id = j.scenario_id
GROUP BY sc.selection, j.spec_id, j.spec_version, j.judge
"""

# Agreement on "flagged or not" (the paper's figure) and on the exact decision.
JUDGE_PAIR_AGREEMENT = """
CREATE VIEW judge_pair_agreement AS
SELECT sc.selection, a.spec_id, a.spec_version, a.judge AS judge_a, b.judge AS judge_b,
       count(*) AS responses,
       count(*) FILTER (WHERE (a.decision <> 'compliant') = (b.decision <> 'compliant'))
           AS flag_agreements,
       count(*) FILTER (WHERE a.decision = b.decision) AS decision_agreements,
       avg(((a.decision <> 'compliant') = (b.decision <> 'compliant'))::int)::float8
           AS flag_agreement,
       avg((a.decision = b.decision)::int)::float8 AS decision_agreement
FROM verdicts a
JOIN verdicts b
  ON b.response_id = a.response_id AND b.spec_id = a.spec_id
 AND b.spec_version = a.spec_version AND a.judge < b.judge
JOIN scenario_scopes sc ON sc.scenario_id = a.scenario_id
GROUP BY sc.selection, a.spec_id, a.spec_version, a.judge, b.judge
"""

# How many answers got each (compliant, non-compliant, ambiguous) count of verdicts: all that
# Fleiss' kappa and Krippendorff's alpha need (specstress.method.agreement computes them from it).
JUDGE_DECISION_PROFILES = """
CREATE VIEW judge_decision_profiles AS
WITH answers AS (
    SELECT sc.selection, v.spec_id, v.spec_version, v.response_id,
           count(*) FILTER (WHERE v.decision = 'compliant') AS compliant,
           count(*) FILTER (WHERE v.decision = 'non-compliant') AS non_compliant,
           count(*) FILTER (WHERE v.decision = 'ambiguous') AS ambiguous
    FROM verdicts v
    JOIN scenario_scopes sc ON sc.scenario_id = v.scenario_id
    GROUP BY sc.selection, v.spec_id, v.spec_version, v.response_id
)
SELECT selection, spec_id, spec_version, compliant, non_compliant, ambiguous,
       count(*) AS answers
FROM answers
GROUP BY selection, spec_id, spec_version, compliant, non_compliant, ambiguous
"""

# Self-preference: a judge's flag rate on one model next to the other judges' flag rate on the
# very same answers; `same_vendor` marks a judge ruling on its own maker's model.
JUDGE_MODEL_FLAGS = """
CREATE VIEW judge_model_flags AS
WITH flags AS (
    SELECT j.*,
           sum(j.flagged::int) OVER r AS answer_flags,
           count(*) OVER r AS answer_judges
    FROM judge_verdicts j
    WINDOW r AS (PARTITION BY j.response_id, j.spec_id, j.spec_version)
)
SELECT sc.selection, f.spec_id, f.spec_version, f.judge, f.model_key,
       f.judge_vendor, f.model_vendor, f.same_vendor,
       count(*) AS verdicts,
       count(*) FILTER (WHERE f.flagged) AS flagged,
       avg(f.flagged::int)::float8 AS flag_rate,
       count(*) FILTER (WHERE f.answer_judges > 1) AS verdicts_with_other_judges,
       avg((f.answer_flags - f.flagged::int)::float8 / (f.answer_judges - 1))
           FILTER (WHERE f.answer_judges > 1) AS other_judges_flag_rate
FROM flags f
JOIN scenario_scopes sc ON sc.scenario_id = f.scenario_id
GROUP BY sc.selection, f.spec_id, f.spec_version, f.judge, f.model_key,
         f.judge_vendor, f.model_vendor, f.same_vendor
"""

COMPLIANCE_BY_MODEL = """
CREATE VIEW compliance_by_model AS
SELECT sc.selection, c.spec_id, c.spec_version, c.model_key,
       count(*) AS answers_judged,
       count(*) FILTER (WHERE c.majority_flag) AS majority_flagged,
       count(*) FILTER (WHERE c.any_flag) AS any_flagged,
       avg(c.majority_flag::int)::float8 AS majority_rate,
       avg(c.any_flag::int)::float8 AS any_rate
FROM response_compliance c
JOIN scenario_scopes sc ON sc.scenario_id = c.scenario_id
GROUP BY sc.selection, c.spec_id, c.spec_version, c.model_key
"""

SPEC_SECTION_CITATIONS = """
CREATE VIEW spec_section_citations AS
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
GROUP BY sc.selection, v.spec_id, v.spec_version, c.anchor, s.position, s.title, s.authority
"""

# Table 2: subsets are every scenario ("random") and each model set's high-disagreement
# scenarios. A sample of n is the n scenarios of the subset with the smallest md5(scenario_id):
# deterministic, independent of insertion order, and a smaller sample is part of a larger one.
TABLE2_SAMPLES = """
CREATE VIEW table2_samples AS
WITH subsets AS (
    SELECT sc.selection, 'random'::text AS subset, NULL::varchar(64) AS model_set, sc.scenario_id
    FROM scenario_scopes sc
    UNION ALL
    SELECT sc.selection, 'high_disagreement'::text, d.model_set, sc.scenario_id
    FROM disagreement d
    JOIN scenario_scopes sc ON sc.scenario_id = d.scenario_id
    WHERE d.high
), ranked AS (
    SELECT s.selection, s.subset, s.model_set, s.scenario_id,
           row_number() OVER p AS sample_rank,
           count(*) OVER p AS subset_size
    FROM subsets s
    WINDOW p AS (PARTITION BY s.selection, s.subset, s.model_set
                 ORDER BY md5(s.scenario_id), s.scenario_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
), specs AS (
    SELECT DISTINCT spec_id, spec_version FROM verdicts
)
SELECT r.selection, r.subset, r.model_set, p.spec_id, p.spec_version, r.scenario_id,
       r.sample_rank, r.subset_size,
       c.scenario_id IS NOT NULL AS judged,
       coalesce(c.frequent_noncompliance_majority, false) AS all_fail_majority,
       coalesce(c.frequent_noncompliance_any, false) AS all_fail_any
FROM ranked r
CROSS JOIN specs p
LEFT JOIN scenario_compliance c
  ON c.scenario_id = r.scenario_id AND c.spec_id = p.spec_id AND c.spec_version = p.spec_version
"""

# Figure 2: frequent non-compliance (every judged answer of the spec's family flagged) by the
# D of a model set, in the paper's bins; the last bin is closed at 3, the largest possible D.
FIGURE2_NONCOMPLIANCE_BY_D = """
CREATE VIEW figure2_noncompliance_by_d AS
WITH bins(bin, bin_label, lower_bound, upper_bound) AS (
    VALUES (1, '[0,1)', 0.0::float8, 1.0::float8),
           (2, '[1,1.5)', 1.0, 1.5),
           (3, '[1.5,2)', 1.5, 2.0),
           (4, '[2,2.5)', 2.0, 2.5),
           (5, '[2.5,3]', 2.5, 3.0)
), judged AS (
    SELECT sc.selection, d.model_set, c.spec_id, c.spec_version, d.disagreement,
           c.frequent_noncompliance_majority, c.frequent_noncompliance_any
    FROM scenario_compliance c
    JOIN disagreement d ON d.scenario_id = c.scenario_id
    JOIN scenario_scopes sc ON sc.scenario_id = c.scenario_id
), groups AS (
    SELECT DISTINCT selection, model_set, spec_id, spec_version FROM judged
)
SELECT g.selection, g.model_set, g.spec_id, g.spec_version, b.bin, b.bin_label,
       b.lower_bound, b.upper_bound,
       count(j.disagreement) AS scenarios,
       count(*) FILTER (WHERE j.frequent_noncompliance_majority) AS frequent_majority,
       count(*) FILTER (WHERE j.frequent_noncompliance_any) AS frequent_any,
       (count(*) FILTER (WHERE j.frequent_noncompliance_majority))::float8
           / nullif(count(j.disagreement), 0) AS majority_rate,
       (count(*) FILTER (WHERE j.frequent_noncompliance_any))::float8
           / nullif(count(j.disagreement), 0) AS any_rate
FROM groups g
CROSS JOIN bins b
LEFT JOIN judged j
  ON j.selection = g.selection AND j.model_set = g.model_set
 AND j.spec_id = g.spec_id AND j.spec_version = g.spec_version
 AND j.disagreement >= b.lower_bound AND (j.disagreement < b.upper_bound OR b.bin = 5)
GROUP BY g.selection, g.model_set, g.spec_id, g.spec_version, b.bin, b.bin_label,
         b.lower_bound, b.upper_bound
"""

# (name, definition) in creation order; dropped in reverse
VIEWS = (
    ("model_set_members", MODEL_SET_MEMBERS),
    ("scenario_scopes", SCENARIO_SCOPES),
    ("outlier_checks", OUTLIER_CHECKS),
    ("figure6_outliers", FIGURE6_OUTLIERS),
    ("judge_verdicts", JUDGE_VERDICTS),
    ("judge_flag_rates", JUDGE_FLAG_RATES),
    ("judge_pair_agreement", JUDGE_PAIR_AGREEMENT),
    ("judge_decision_profiles", JUDGE_DECISION_PROFILES),
    ("judge_model_flags", JUDGE_MODEL_FLAGS),
    ("compliance_by_model", COMPLIANCE_BY_MODEL),
    ("spec_section_citations", SPEC_SECTION_CITATIONS),
    ("table2_samples", TABLE2_SAMPLES),
    ("figure2_noncompliance_by_d", FIGURE2_NONCOMPLIANCE_BY_D),
)


def upgrade() -> None:
    op.create_table(
        "model_set_rules",
        sa.Column("model_set", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("model_set", "member", name=op.f("pk_model_set_rules")),
    )
    op.create_table(
        "model_vendors",
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("model_key", name=op.f("pk_model_vendors")),
    )
    op.create_table(
        "analysis_settings",
        sa.Column("settings_id", sa.Integer(), nullable=False),
        sa.Column("outlier_min_gap", sa.Integer(), nullable=False),
        sa.Column("outlier_share", sa.Numeric(precision=7, scale=6), nullable=False),
        sa.CheckConstraint("settings_id = 1", name=op.f("ck_analysis_settings_single_row")),
        sa.PrimaryKeyConstraint("settings_id", name=op.f("pk_analysis_settings")),
    )
    # the config's defaults until `specstress init` mirrors the config's own values
    op.execute(
        "INSERT INTO analysis_settings (settings_id, outlier_min_gap, outlier_share) "
        "VALUES (1, 4, 0.75)"
    )
    op.create_table(
        "spec_sections",
        sa.Column("spec_id", sa.String(length=64), nullable=False),
        sa.Column("spec_version", sa.String(length=64), nullable=False),
        sa.Column("anchor", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("authority", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("spec_id", "spec_version", "anchor", name=op.f("pk_spec_sections")),
    )
    op.create_table(
        "verdict_citations",
        sa.Column("verdict_id", sa.String(length=32), nullable=False),
        sa.Column("anchor", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["verdict_id"],
            ["verdicts.verdict_id"],
            name=op.f("fk_verdict_citations_verdict_id_verdicts"),
        ),
        sa.PrimaryKeyConstraint("verdict_id", "anchor", name=op.f("pk_verdict_citations")),
    )
    for _name, definition in VIEWS:
        op.execute(definition)


def downgrade() -> None:
    for name, _definition in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.drop_table("verdict_citations")
    op.drop_table("spec_sections")
    op.drop_table("analysis_settings")
    op.drop_table("model_vendors")
    op.drop_table("model_set_rules")
