"""Distinctive values mapped to level-2 taxonomy categories, and Figures 10 and 11 on them.

Both views answer per selection (through `scenario_scopes`), taxonomy version and embedding
key; a value text joins its mapping by the sha256 of the text.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# One row per scenario, answer and category its distinctive values map to.
_SHOWS = """
    SELECT DISTINCT sc.selection, c.taxonomy_version, c.embedding_key, dv.scenario_id,
           dv.response_id, dv.model_key, c.category_id, c.category
    FROM distinctive_values dv
    JOIN value_categories c
      ON c.value_hash = encode(sha256(convert_to(dv.value, 'UTF8')), 'hex')
    JOIN scenario_scopes sc ON sc.scenario_id = dv.scenario_id
"""

FIGURE10 = f"""
CREATE OR REPLACE VIEW figure10_value_categories AS
WITH shows AS ({_SHOWS})
SELECT selection, taxonomy_version, embedding_key, model_key, category_id, category,
       count(DISTINCT response_id) AS responses
FROM shows
GROUP BY selection, taxonomy_version, embedding_key, model_key, category_id, category
"""

# P(B shows Y | A shows X) over the scenarios where A shows X and B (another model) has
# distinctive values; every level-2 category Y gets a row, zero included.
FIGURE11 = f"""
CREATE OR REPLACE VIEW figure11_cooccurrence AS
WITH shows AS (
    SELECT DISTINCT selection, taxonomy_version, embedding_key, scenario_id, model_key,
           category_id, category
    FROM ({_SHOWS}) answers
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
 AND j.category_y_id = y.value_id
"""


def upgrade() -> None:
    op.create_table(
        "value_categories",
        sa.Column("value_hash", sa.String(64), nullable=False),
        sa.Column("taxonomy_version", sa.String(64), nullable=False),
        sa.Column("embedding_key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("category_id", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint(
            "value_hash", "taxonomy_version", "embedding_key", name="pk_value_categories"
        ),
    )
    op.execute(FIGURE10)
    op.execute(FIGURE11)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS figure11_cooccurrence")
    op.execute("DROP VIEW IF EXISTS figure10_value_categories")
    op.drop_table("value_categories")
