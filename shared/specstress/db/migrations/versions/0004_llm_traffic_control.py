"""LLM traffic control: fleet-wide rate limits, provider pauses, running spend, deferrals.

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

# The spend counter starts from the answers already paid for, so a budget set on an existing
# database counts them.
_SEED_SPEND = """
INSERT INTO llm_spend (shard, cost_usd, tokens)
SELECT 0, coalesce(sum(cost_usd), 0), coalesce(sum(input_tokens + output_tokens), 0)
FROM llm_calls WHERE status = 'ok'
"""


def _updated_at() -> sa.Column[object]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "llm_rate_limits",
        sa.Column("limit_key", sa.String(length=64), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("model_id", sa.Text(), nullable=False),
        sa.Column("api_key_env", sa.String(length=128), nullable=True),
        sa.Column("request_tat", sa.Float(), server_default="0", nullable=False),
        sa.Column("token_tat", sa.Float(), server_default="0", nullable=False),
        sa.Column("blocked_until", sa.Float(), server_default="0", nullable=False),
        sa.Column("rate_factor", sa.Float(), server_default="1", nullable=False),
        sa.Column("throttled_at", sa.Float(), server_default="0", nullable=False),
        sa.Column("learned_requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("learned_tokens_per_minute", sa.Integer(), nullable=True),
        _updated_at(),
        sa.PrimaryKeyConstraint("limit_key", name=op.f("pk_llm_rate_limits")),
    )
    op.create_table(
        "llm_provider_pauses",
        sa.Column("provider_key", sa.String(length=64), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("api_key_env", sa.String(length=128), nullable=True),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "paused_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("provider_key", name=op.f("pk_llm_provider_pauses")),
    )
    op.create_table(
        "llm_spend",
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("shard", name=op.f("pk_llm_spend")),
    )
    op.create_table(
        "message_deferrals",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("stream_sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("deferrals", sa.Integer(), nullable=False),
        sa.Column("last_reason", sa.Text(), nullable=False),
        _updated_at(),
        sa.PrimaryKeyConstraint("consumer", "stream_sequence", name=op.f("pk_message_deferrals")),
    )
    op.execute(_SEED_SPEND)


def downgrade() -> None:
    op.drop_table("message_deferrals")
    op.drop_table("llm_spend")
    op.drop_table("llm_provider_pauses")
    op.drop_table("llm_rate_limits")
