"""The watcher: discovered models, model entries kept in the database, release comparisons.

Revision ID: 0015_discovered_models
Revises: 0014_dataset_import
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015_discovered_models"
down_revision = "0012_completeness"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("entry", postgresql.JSONB(), nullable=True))
    op.add_column("models", sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "discovered_models",
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("model_key", sa.String(64), nullable=True),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("provider_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("family", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entry", postgresql.JSONB(), nullable=True),
        sa.Column("estimate_usd", sa.Float(), nullable=True),
        sa.Column("estimate", postgresql.JSONB(), nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "first_seen", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "last_seen", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backfill_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('proposed', 'registered', 'ignored', 'retired')",
            name=op.f("ck_discovered_models_status"),
        ),
        sa.PrimaryKeyConstraint("provider", "model_id", name=op.f("pk_discovered_models")),
    )
    op.create_index(
        "ix_discovered_models_model_key", "discovered_models", ["model_key"], unique=False
    )
    op.create_table(
        "model_comparisons",
        sa.Column("model_key", sa.String(64), nullable=False),
        sa.Column("against", sa.String(64), nullable=False),
        sa.Column("family", sa.String(64), nullable=False),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("flag_rate_shift", sa.Float(), nullable=True),
        sa.Column(
            "computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("model_key", "against", name=op.f("pk_model_comparisons")),
    )


def downgrade() -> None:
    op.drop_table("model_comparisons")
    op.drop_index("ix_discovered_models_model_key", table_name="discovered_models")
    op.drop_table("discovered_models")
    op.drop_column("models", "retired_at")
    op.drop_column("models", "entry")
