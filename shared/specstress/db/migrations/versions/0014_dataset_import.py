"""Classifier confidence may be unknown: the paper's released dataset carries positions only.

Revision ID: 0014_dataset_import
Revises: 0016_text_caps
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_dataset_import"
down_revision = "0016_text_caps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("value1_confidence", "value2_confidence"):
        op.alter_column("classifications", column, existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    for column in ("value1_confidence", "value2_confidence"):
        op.execute(f"UPDATE classifications SET {column} = 'NaN' WHERE {column} IS NULL")
        op.alter_column("classifications", column, existing_type=sa.Float(), nullable=False)
