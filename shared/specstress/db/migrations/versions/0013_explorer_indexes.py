"""Indexes for the explorer's scenario list (`specstress serve`).

The list pages through one model set's scenarios in D order with a keyset, so it walks
(model_set, disagreement, scenario_id) and stops after a page. A value name filters through
either side of the pair, and a text search through a trigram index on the query (pg_trgm ships
with PostgreSQL and is a trusted extension, so the schema owner can create it).

Revision ID: 0013
Revises: 0011
"""

from alembic import op

revision = "0013"
down_revision = "0015_discovered_models"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_disagreement_set_d", "disagreement", ["model_set", "disagreement", "scenario_id"]
    )
    op.create_index("ix_value_pairs_value1", "value_pairs", ["value1"])
    op.create_index("ix_value_pairs_value2", "value_pairs", ["value2"])
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index(
        "ix_scenarios_query_trgm",
        "scenarios",
        ["query"],
        postgresql_using="gin",
        postgresql_ops={"query": "gin_trgm_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_scenarios_query_trgm", table_name="scenarios")
    op.drop_index("ix_value_pairs_value2", table_name="value_pairs")
    op.drop_index("ix_value_pairs_value1", table_name="value_pairs")
    op.drop_index("ix_disagreement_set_d", table_name="disagreement")
