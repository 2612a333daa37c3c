"""Join the migration branches of the batch, traffic-control and analysis work into one head.

Revision ID: 0010
Revises: 0003, 0004, 0009
"""

revision = "0010"
down_revision = ("0003", "0004", "0009")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: this revision only records that the branches are joined."""


def downgrade() -> None:
    """Nothing to change: downgrading splits the branches again."""
