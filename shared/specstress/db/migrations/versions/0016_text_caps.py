"""Caps on stored model text: a `cut` column on each table that keeps a model's answer,
thinking or reasoning, naming the fields that were shortened and their original lengths.

Revision ID: 0016_text_caps
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016_text_caps"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("responses", "classifications", "verdicts", "refusal_types")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("cut", JSONB(none_as_null=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "cut")
