"""Embeddings (a per-text cache and per-scenario vectors) and named diversity selections.

Revision ID: 0005
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "embedding_cache",
        sa.Column("embedder_hash", sa.String(length=64), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "octet_length(vector) = 4 * dim", name=op.f("ck_embedding_cache_vector_size")
        ),
        sa.PrimaryKeyConstraint("embedder_hash", "text_hash", name=op.f("pk_embedding_cache")),
    )
    op.create_table(
        "scenario_embeddings",
        sa.Column("embedding_key", sa.String(length=64), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("embedder_hash", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            "octet_length(vector) = 4 * dim", name=op.f("ck_scenario_embeddings_vector_size")
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_scenario_embeddings_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint(
            "embedding_key", "scenario_id", name=op.f("pk_scenario_embeddings")
        ),
    )
    op.create_table(
        "selections",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("weighted_by", sa.String(length=64), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("embedding_key", sa.String(length=64), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("selected", sa.Integer(), nullable=False),
        _created_at(),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("method IN ('exact', 'partitioned')", name=op.f("ck_selections_method")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_selections")),
    )
    op.create_table(
        "selection_members",
        sa.Column("selection", sa.String(length=64), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("pick_distance", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_selection_members_scenario_id_scenarios"),
        ),
        sa.ForeignKeyConstraint(
            ["selection"],
            ["selections.name"],
            name=op.f("fk_selection_members_selection_selections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("selection", "scenario_id", name=op.f("pk_selection_members")),
        sa.UniqueConstraint("selection", "rank", name="uq_selection_members_rank"),
    )


def downgrade() -> None:
    op.drop_table("selection_members")
    op.drop_table("selections")
    op.drop_table("scenario_embeddings")
    op.drop_table("embedding_cache")
