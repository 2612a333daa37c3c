"""Dead letters with a reason code, the completeness stage and unit they hold back, and replay.

Rows written before this revision keep their text reason and get the code `unclassified`.

Revision ID: 0012_completeness
Revises: 0014_dataset_import
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_completeness"
down_revision = "0014_dataset_import"
branch_labels = None
depends_on = None

# the codes as of this revision (specstress.db.schema.REASON_CODES); a later change of the set
# comes with its own revision
_CODES = ", ".join(
    f"'{code}'"
    for code in (
        "invalid_payload",
        "unprocessable",
        "invalid_bytes",
        "oversize",
        "schema_invalid",
        "unparseable_output",
        "provider_refused",
        "content_filtered",
        "quota_exhausted",
        "budget_exhausted",
        "deferred_too_long",
        "stalled",
        "max_deliveries",
        "unclassified",
    )
)


def upgrade() -> None:
    op.add_column(
        "dead_letters",
        sa.Column(
            "reason_code", sa.String(length=32), nullable=False, server_default="unclassified"
        ),
    )
    op.add_column("dead_letters", sa.Column("stage", sa.String(length=32), nullable=True))
    op.add_column("dead_letters", sa.Column("unit", sa.Text(), nullable=True))
    op.add_column(
        "dead_letters", sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        "ck_dead_letters_reason_code", "dead_letters", f"reason_code IN ({_CODES})"
    )
    op.create_index(
        "ix_dead_letters_open_units",
        "dead_letters",
        ["stage", "unit"],
        postgresql_where=sa.text("replayed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_open_units", table_name="dead_letters")
    op.drop_constraint("ck_dead_letters_reason_code", "dead_letters", type_="check")
    for column in ("replayed_at", "unit", "stage", "reason_code"):
        op.drop_column("dead_letters", column)
