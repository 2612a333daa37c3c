"""Baseline: every table, sequence, constraint and index of the schema as of 0.1.

The fifteen migrations written before the first release were folded into this one; it runs the
frozen DDL in `migrations/baseline.sql` (what that chain built, views left out: the views are
installed from `db/views/*.sql` after every upgrade). It keeps the old head's revision id, so a
database that an earlier checkout brought to the head needs nothing.

Revision ID: 0013
Revises:
"""

from importlib import resources

from alembic import op

revision = "0013"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    ddl = (resources.files("specstress.db") / "migrations" / "baseline.sql").read_text("utf-8")
    for statement in ddl.split(";\n\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the baseline cannot be undone: drop the database instead")
