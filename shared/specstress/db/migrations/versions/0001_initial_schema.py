"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("dead_letter_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("stream_sequence", sa.BigInteger(), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("dead_letter_id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("consumer", "stream_sequence", name="uq_dead_letters_message"),
    )
    op.create_table(
        "llm_calls",
        sa.Column("call_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_class", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cached_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("latency_seconds", sa.Float(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_llm_calls")),
    )
    op.create_index(
        "ix_llm_calls_model_created", "llm_calls", ["model_key", "created_at"], unique=False
    )
    op.create_index(
        "uq_llm_calls_completed",
        "llm_calls",
        ["request_hash"],
        unique=True,
        postgresql_where=sa.text("status = 'ok'"),
    )
    op.create_table(
        "models",
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("model_key", name=op.f("pk_models")),
    )
    op.create_table(
        "value_pairs",
        sa.Column("pair_id", sa.String(length=32), nullable=False),
        sa.Column("value1", sa.Text(), nullable=False),
        sa.Column("value2", sa.Text(), nullable=False),
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("run_index", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("pair_id", name=op.f("pk_value_pairs")),
    )
    op.create_table(
        "values",
        sa.Column("taxonomy_version", sa.String(length=64), nullable=False),
        sa.Column("value_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("pct_total_occurrences", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("taxonomy_version", "value_id", name=op.f("pk_values")),
    )
    op.create_table(
        "scenario_drops",
        sa.Column("pair_id", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=8), nullable=False),
        sa.Column("generator", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_output", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["value_pairs.pair_id"], name=op.f("fk_scenario_drops_pair_id_value_pairs")
        ),
        sa.PrimaryKeyConstraint("pair_id", "variant", name=op.f("pk_scenario_drops")),
    )
    op.create_table(
        "scenarios",
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("pair_id", sa.String(length=32), nullable=False),
        sa.Column("variant", sa.String(length=8), nullable=False),
        sa.Column("generator", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "variant IN ('neutral', 'value1', 'value2')", name=op.f("ck_scenarios_variant")
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["value_pairs.pair_id"], name=op.f("fk_scenarios_pair_id_value_pairs")
        ),
        sa.PrimaryKeyConstraint("scenario_id", name=op.f("pk_scenarios")),
        sa.UniqueConstraint("pair_id", "variant", name="uq_scenarios_pair_variant"),
    )
    op.create_index(op.f("ix_scenarios_pair_id"), "scenarios", ["pair_id"], unique=False)
    op.create_table(
        "spectra",
        sa.Column("spectrum_id", sa.String(length=32), nullable=False),
        sa.Column("pair_id", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("value1_spectrum", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("value2_spectrum", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"], ["value_pairs.pair_id"], name=op.f("fk_spectra_pair_id_value_pairs")
        ),
        sa.PrimaryKeyConstraint("spectrum_id", name=op.f("pk_spectra")),
        sa.UniqueConstraint("pair_id", name=op.f("uq_spectra_pair_id")),
    )
    op.create_table(
        "disagreement",
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("model_set", sa.String(length=64), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("value1_std", sa.Float(), nullable=False),
        sa.Column("value2_std", sa.Float(), nullable=False),
        sa.Column("disagreement", sa.Float(), nullable=False),
        sa.Column("high", sa.Boolean(), nullable=False),
        sa.Column(
            "computed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_disagreement_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint("scenario_id", "model_set", name=op.f("pk_disagreement")),
    )
    op.create_table(
        "responses",
        sa.Column("response_id", sa.String(length=32), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("model_key", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("thinking", sa.Text(), nullable=True),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("llm_call_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["model_key"], ["models.model_key"], name=op.f("fk_responses_model_key_models")
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_responses_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint("response_id", name=op.f("pk_responses")),
        sa.UniqueConstraint("scenario_id", "model_key", name="uq_responses_scenario_model"),
    )
    op.create_index(op.f("ix_responses_scenario_id"), "responses", ["scenario_id"], unique=False)
    op.create_table(
        "classifications",
        sa.Column("response_id", sa.String(length=32), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("spectrum_id", sa.String(length=32), nullable=False),
        sa.Column("classifier", sa.String(length=64), nullable=False),
        sa.Column("value1_position", sa.Integer(), nullable=False),
        sa.Column("value1_confidence", sa.Float(), nullable=False),
        sa.Column("value1_reasoning", sa.Text(), nullable=False),
        sa.Column("value2_position", sa.Integer(), nullable=False),
        sa.Column("value2_confidence", sa.Float(), nullable=False),
        sa.Column("value2_reasoning", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "value1_position BETWEEN 0 AND 6", name=op.f("ck_classifications_value1_position")
        ),
        sa.CheckConstraint(
            "value2_position BETWEEN 0 AND 6", name=op.f("ck_classifications_value2_position")
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.response_id"],
            name=op.f("fk_classifications_response_id_responses"),
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_classifications_scenario_id_scenarios"),
        ),
        sa.ForeignKeyConstraint(
            ["spectrum_id"],
            ["spectra.spectrum_id"],
            name=op.f("fk_classifications_spectrum_id_spectra"),
        ),
        sa.PrimaryKeyConstraint("response_id", name=op.f("pk_classifications")),
    )
    op.create_index(
        op.f("ix_classifications_scenario_id"), "classifications", ["scenario_id"], unique=False
    )
    op.create_table(
        "verdicts",
        sa.Column("verdict_id", sa.String(length=32), nullable=False),
        sa.Column("response_id", sa.String(length=32), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("judge", sa.String(length=64), nullable=False),
        sa.Column("spec_id", sa.String(length=64), nullable=False),
        sa.Column("spec_version", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reasoning", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "decision IN ('compliant', 'non-compliant', 'ambiguous')",
            name=op.f("ck_verdicts_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.response_id"],
            name=op.f("fk_verdicts_response_id_responses"),
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name=op.f("fk_verdicts_scenario_id_scenarios"),
        ),
        sa.PrimaryKeyConstraint("verdict_id", name=op.f("pk_verdicts")),
        sa.UniqueConstraint(
            "response_id", "judge", "spec_id", "spec_version", name="uq_verdicts_key"
        ),
    )
    op.create_index(op.f("ix_verdicts_response_id"), "verdicts", ["response_id"], unique=False)
    op.create_index(op.f("ix_verdicts_scenario_id"), "verdicts", ["scenario_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_verdicts_scenario_id"), table_name="verdicts")
    op.drop_index(op.f("ix_verdicts_response_id"), table_name="verdicts")
    op.drop_table("verdicts")
    op.drop_index(op.f("ix_classifications_scenario_id"), table_name="classifications")
    op.drop_table("classifications")
    op.drop_index(op.f("ix_responses_scenario_id"), table_name="responses")
    op.drop_table("responses")
    op.drop_table("disagreement")
    op.drop_table("spectra")
    op.drop_index(op.f("ix_scenarios_pair_id"), table_name="scenarios")
    op.drop_table("scenarios")
    op.drop_table("scenario_drops")
    op.drop_table("values")
    op.drop_table("value_pairs")
    op.drop_table("models")
    op.drop_index(
        "uq_llm_calls_completed", table_name="llm_calls", postgresql_where=sa.text("status = 'ok'")
    )
    op.drop_index("ix_llm_calls_model_created", table_name="llm_calls")
    op.drop_table("llm_calls")
    op.drop_table("dead_letters")
