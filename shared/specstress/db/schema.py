"""Every table, defined once. Migrations under `specstress/db/migrations` create them.

Fact tables are append-only: rows are inserted with ON CONFLICT DO NOTHING on their
deterministic id. Derived tables (`disagreement`) are recomputed from facts and upserted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(32)


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


values = Table(
    "values",
    metadata,
    Column("taxonomy_version", String(64), primary_key=True),
    Column("value_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("level", Integer, nullable=False),
    Column("parent_id", Text),
    Column("description", Text, nullable=False, server_default=""),
    Column("pct_total_occurrences", Float),
)

value_pairs = Table(
    "value_pairs",
    metadata,
    Column("pair_id", ID, primary_key=True),
    Column("value1", Text, nullable=False),
    Column("value2", Text, nullable=False),
    Column("taxonomy_version", String(64), nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("run_index", Integer, nullable=False),
    _created_at(),
)

scenarios = Table(
    "scenarios",
    metadata,
    Column("scenario_id", ID, primary_key=True),
    Column("pair_id", ID, ForeignKey("value_pairs.pair_id"), nullable=False, index=True),
    Column("variant", String(8), nullable=False),
    Column("generator", String(64), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    Column("query", Text, nullable=False),
    _created_at(),
    UniqueConstraint("pair_id", "variant", name="uq_scenarios_pair_variant"),
    CheckConstraint("variant IN ('neutral', 'value1', 'value2')", name="variant"),
)

scenario_drops = Table(
    "scenario_drops",
    metadata,
    Column("pair_id", ID, ForeignKey("value_pairs.pair_id"), primary_key=True),
    Column("variant", String(8), primary_key=True),
    Column("generator", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw_output", Text, nullable=False),
    _created_at(),
)

models = Table(
    "models",
    metadata,
    Column("model_key", String(64), primary_key=True),
    Column("family", String(64), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("registered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

responses = Table(
    "responses",
    metadata,
    Column("response_id", ID, primary_key=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=False, index=True),
    Column("model_key", String(64), ForeignKey("models.model_key"), nullable=False),
    Column("text", Text, nullable=False),
    Column("thinking", Text),
    Column("params", JSONB, nullable=False),
    Column("llm_call_hash", String(64), nullable=False),
    _created_at(),
    UniqueConstraint("scenario_id", "model_key", name="uq_responses_scenario_model"),
)

spectra = Table(
    "spectra",
    metadata,
    Column("spectrum_id", ID, primary_key=True),
    Column("pair_id", ID, ForeignKey("value_pairs.pair_id"), nullable=False, unique=True),
    Column("model_key", String(64), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    # each a list of 7 {"position": ..., "response": ...} in canonical order
    Column("value1_spectrum", JSONB, nullable=False),
    Column("value2_spectrum", JSONB, nullable=False),
    _created_at(),
)

classifications = Table(
    "classifications",
    metadata,
    Column("response_id", ID, ForeignKey("responses.response_id"), primary_key=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=False, index=True),
    Column("spectrum_id", ID, ForeignKey("spectra.spectrum_id"), nullable=False),
    Column("classifier", String(64), nullable=False),
    Column("value1_position", Integer, nullable=False),
    Column("value1_confidence", Float, nullable=False),
    Column("value1_reasoning", Text, nullable=False),
    Column("value2_position", Integer, nullable=False),
    Column("value2_confidence", Float, nullable=False),
    Column("value2_reasoning", Text, nullable=False),
    _created_at(),
    CheckConstraint("value1_position BETWEEN 0 AND 6", name="value1_position"),
    CheckConstraint("value2_position BETWEEN 0 AND 6", name="value2_position"),
)

disagreement = Table(
    "disagreement",
    metadata,
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), primary_key=True),
    Column("model_set", String(64), primary_key=True),
    Column("members", Integer, nullable=False),
    Column("value1_std", Float, nullable=False),
    Column("value2_std", Float, nullable=False),
    Column("disagreement", Float, nullable=False),
    Column("high", Boolean, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("verdict_id", ID, primary_key=True),
    Column("response_id", ID, ForeignKey("responses.response_id"), nullable=False, index=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=False, index=True),
    Column("judge", String(64), nullable=False),
    Column("spec_id", String(64), nullable=False),
    Column("spec_version", String(64), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reasoning", Text, nullable=False),
    _created_at(),
    UniqueConstraint("response_id", "judge", "spec_id", "spec_version", name="uq_verdicts_key"),
    CheckConstraint("decision IN ('compliant', 'non-compliant', 'ambiguous')", name="decision"),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("call_id", BigInteger, primary_key=True, autoincrement=True),
    Column("request_hash", String(64), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("model_key", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    # ok | error
    Column("status", String(16), nullable=False),
    # retryable | terminal_quota | terminal_client | bad_output | null when ok
    Column("error_class", String(32)),
    Column("error", Text),
    Column("http_status", Integer),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cached_tokens", Integer, nullable=False, server_default="0"),
    Column("reasoning_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("latency_seconds", Float, nullable=False),
    Column("response", JSONB),
    _created_at(),
    Index(
        "uq_llm_calls_completed",
        "request_hash",
        unique=True,
        postgresql_where=text("status = 'ok'"),
    ),
    Index("ix_llm_calls_model_created", "model_key", "created_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("dead_letter_id", BigInteger, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("stream_sequence", BigInteger),
    Column("deliveries", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    _created_at(),
    UniqueConstraint("consumer", "stream_sequence", name="uq_dead_letters_message"),
)
