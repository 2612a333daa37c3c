"""Topic labels, refusal types and distinctive values (method 2.10, 2.11, 2.13).

Revision ID: 0006
Revises: 0002
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None

# Literal copies on purpose: a migration must keep meaning what it meant when it was written.
TOPIC_COLUMNS = {
    "cyber security": "cyber_security",
    "biological weapons": "biological_weapons",
    "chemical weapons": "chemical_weapons",
    "politics": "politics",
    "child grooming": "child_grooming",
    "mental illness": "mental_illness",
    "philosophical reasoning": "philosophical_reasoning",
    "ethics & moral reasoning": "ethics_moral_reasoning",
}
REFUSAL_TYPES = (
    "'Full Compliance', 'Compliance with Minor Additions', 'Conditional Compliance', "
    "'Partial Compliance with Redirection', 'Soft Rejection with Alternatives', "
    "'Firm Rejection with Explanation', 'Complete Rejection'"
)
REFUSALS = (
    "'Soft Rejection with Alternatives', 'Firm Rejection with Explanation', 'Complete Rejection'"
)

# One row per (scenario, topic the labeller marked present), with the topic's JSON key.
_TOPIC_ROWS = ",\n        ".join(
    f"('{topic}', t.{column})" for topic, column in TOPIC_COLUMNS.items()
)
SCENARIO_TOPICS = f"""
CREATE VIEW scenario_topics AS
SELECT t.scenario_id, x.topic
FROM topic_labels t
CROSS JOIN LATERAL (VALUES
        {_TOPIC_ROWS}
) AS x(topic, present)
WHERE x.present
"""


def _created_at() -> sa.Column[datetime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "topic_labels",
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("labeller", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        *(sa.Column(column, sa.Boolean(), nullable=False) for column in TOPIC_COLUMNS.values()),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_topic_labels_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint("scenario_id", name=op.f("pk_topic_labels")),
    )
    op.create_table(
        "refusal_types",
        sa.Column("response_id", sa.String(length=32), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("labeller", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("refusal_type", sa.String(length=48), nullable=False),
        sa.Column("refusal", sa.Boolean(), nullable=False),
        sa.Column("reasoning", sa.Text(), nullable=False),
        _created_at(),
        sa.CheckConstraint(
            f"refusal_type IN ({REFUSAL_TYPES})", name=op.f("ck_refusal_types_refusal_type")
        ),
        sa.CheckConstraint(
            f"refusal = (refusal_type IN ({REFUSALS}))", name=op.f("ck_refusal_types_refusal")
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.response_id"],
            name=op.f("fk_refusal_types_response_id_responses"),
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_refusal_types_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint("response_id", name=op.f("pk_refusal_types")),
    )
    op.create_index(
        op.f("ix_refusal_types_scenario_id"), "refusal_types", ["scenario_id"], unique=False
    )
    op.create_table(
        "distinctive_values",
        sa.Column("response_id", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("labeller", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        _created_at(),
        sa.CheckConstraint("rank >= 1", name=op.f("ck_distinctive_values_rank")),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.response_id"],
            name=op.f("fk_distinctive_values_response_id_responses"),
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_distinctive_values_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint("response_id", "rank", name=op.f("pk_distinctive_values")),
    )
    op.create_index(
        op.f("ix_distinctive_values_scenario_id"),
        "distinctive_values",
        ["scenario_id"],
        unique=False,
    )
    op.execute(SCENARIO_TOPICS)


def downgrade() -> None:
    op.execute("DROP VIEW scenario_topics")
    op.drop_index(op.f("ix_distinctive_values_scenario_id"), table_name="distinctive_values")
    op.drop_table("distinctive_values")
    op.drop_index(op.f("ix_refusal_types_scenario_id"), table_name="refusal_types")
    op.drop_table("refusal_types")
    op.drop_table("topic_labels")
