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
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from specstress.method import REFUSAL_TYPES, REFUSALS, TOPIC_COLUMNS

__all__ = [
    "ID",
    "analysis_settings",
    "classifications",
    "dead_letters",
    "disagreement",
    "distinctive_values",
    "embedding_cache",
    "llm_batch_jobs",
    "llm_batch_requests",
    "llm_calls",
    "llm_provider_pauses",
    "llm_rate_limits",
    "llm_spend",
    "message_deferrals",
    "metadata",
    "model_set_rules",
    "model_vendors",
    "models",
    "refusal_types",
    "responses",
    "scenario_drops",
    "scenario_embeddings",
    "scenarios",
    "selection_members",
    "selections",
    "spec_sections",
    "spectra",
    "topic_labels",
    "value_categories",
    "value_pairs",
    "values",
    "verdict_citations",
    "verdicts",
]

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


def _cut() -> Column[object]:
    """Text fields of the row that the caps shortened (config `text_caps`), each with its
    original length in characters, e.g. {"text": 5242880}; NULL when all was stored whole."""
    return Column("cut", JSONB(none_as_null=True), nullable=True)


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
    # the explorer filters scenarios by a value on either side
    Index("ix_value_pairs_value1", "value1"),
    Index("ix_value_pairs_value2", "value2"),
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
    # the explorer's text search (pg_trgm)
    Index(
        "ix_scenarios_query_trgm",
        "query",
        postgresql_using="gin",
        postgresql_ops={"query": "gin_trgm_ops"},
    ),
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
    # the whole endpoint entry (a ModelConfig as JSON) of a model that is not in the config
    # file: a discovered model registered from its rule's template (specstress.watch.entries)
    Column("entry", JSONB),
    # when its provider stopped listing it: no new calls, its facts stay
    Column("retired_at", DateTime(timezone=True)),
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
    _cut(),
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
    # null when unknown: imported positions of the paper's release carry no confidence
    Column("value1_confidence", Float),
    Column("value1_reasoning", Text, nullable=False),
    Column("value2_position", Integer, nullable=False),
    Column("value2_confidence", Float),
    Column("value2_reasoning", Text, nullable=False),
    _cut(),
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
    # the explorer pages through one set's scenarios in D order (keyset)
    Index("ix_disagreement_set_d", "model_set", "disagreement", "scenario_id"),
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
    _cut(),
    _created_at(),
    UniqueConstraint("response_id", "judge", "spec_id", "spec_version", name="uq_verdicts_key"),
    CheckConstraint("decision IN ('compliant', 'non-compliant', 'ambiguous')", name="decision"),
)

# Labels of method 2.10, 2.11 and 2.13. Each row records the model and prompt version that
# produced it; the first label stored for a scenario or response is kept.
topic_labels = Table(
    "topic_labels",
    metadata,
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), primary_key=True),
    Column("labeller", String(64), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    *(Column(column, Boolean, nullable=False) for column in TOPIC_COLUMNS.values()),
    _created_at(),
)

_SQL_REFUSAL_TYPES = ", ".join(f"'{t}'" for t in REFUSAL_TYPES)
_SQL_REFUSALS = ", ".join(f"'{t}'" for t in REFUSAL_TYPES if t in REFUSALS)

refusal_types = Table(
    "refusal_types",
    metadata,
    Column("response_id", ID, ForeignKey("responses.response_id"), primary_key=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=False, index=True),
    Column("model_key", String(64), nullable=False),
    Column("labeller", String(64), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    Column("refusal_type", String(48), nullable=False),
    # true for the last three types; kept as a column so reports need no copy of the list
    Column("refusal", Boolean, nullable=False),
    Column("reasoning", Text, nullable=False),
    _cut(),
    _created_at(),
    CheckConstraint(f"refusal_type IN ({_SQL_REFUSAL_TYPES})", name="refusal_type"),
    CheckConstraint(f"refusal = (refusal_type IN ({_SQL_REFUSALS}))", name="refusal"),
)

distinctive_values = Table(
    "distinctive_values",
    metadata,
    Column("response_id", ID, ForeignKey("responses.response_id"), primary_key=True),
    # 1 = the value the judge named first for this answer
    Column("rank", Integer, primary_key=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=False, index=True),
    Column("model_key", String(64), nullable=False),
    Column("value", Text, nullable=False),
    Column("labeller", String(64), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    _created_at(),
    CheckConstraint("rank >= 1", name="rank"),
)

# The level-2 taxonomy category nearest (cosine of embeddings) to each distinctive value text,
# per taxonomy version and embedding key (method 2.13). `value_hash` is the sha256 of the text,
# so views join it to `distinctive_values` without a copy of long texts in the key.
value_categories = Table(
    "value_categories",
    metadata,
    Column("value_hash", String(64), primary_key=True),
    Column("taxonomy_version", String(64), primary_key=True),
    Column("embedding_key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("category_id", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("similarity", Float, nullable=False),
    _created_at(),
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

# Why a message was dead-lettered: a fixed set, so dead letters can be counted, alerted on and
# replayed by cause (specstress.pipeline.progress.reasons sorts failures into these).
REASON_CODES: tuple[str, ...] = (
    "invalid_payload",  # the message does not parse as its event
    "unprocessable",  # it names something the config or the database does not hold
    "invalid_bytes",  # text Postgres refuses: a NUL byte, a lone surrogate
    "oversize",  # a value larger than its column or a Postgres limit
    "schema_invalid",  # a row that breaks a constraint of the schema
    "unparseable_output",  # a model kept answering outside the required format
    "provider_refused",  # the provider rejected the request itself (a 4xx)
    "content_filtered",  # the provider's content filter blocked the request or the answer
    "quota_exhausted",  # the provider account is out of money or quota
    "budget_exhausted",  # the run's budget stayed spent through every deferral
    "deferred_too_long",  # waited (rate limit, paused provider, batch) through every deferral
    "stalled",  # deliveries kept ending without a word (the worker died or hung)
    "max_deliveries",  # failed on every delivery for another reason
    "unclassified",  # recorded before reasons had codes
)
_SQL_REASON_CODES = ", ".join(f"'{code}'" for code in REASON_CODES)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("dead_letter_id", BigInteger, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("stream_sequence", BigInteger),
    Column("deliveries", Integer, nullable=False),
    # a short message for people: never the payload, a model's answer or SQL
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    _created_at(),
    # one of REASON_CODES: what went wrong, to group, alert on and replay by
    Column("reason_code", String(32), nullable=False, server_default="unclassified"),
    # the completeness stage the message's unit belongs to and the unit's id in that stage
    # (see specstress.pipeline.progress); null when the payload did not parse
    Column("stage", String(32)),
    Column("unit", Text),
    # set by `specstress dead-letters replay`: the unit is pending again, not dead
    Column("replayed_at", DateTime(timezone=True)),
    UniqueConstraint("consumer", "stream_sequence", name="uq_dead_letters_message"),
    CheckConstraint(f"reason_code IN ({_SQL_REASON_CODES})", name="reason_code"),
    Index(
        "ix_dead_letters_open_units", "stage", "unit", postgresql_where=text("replayed_at IS NULL")
    ),
)

# --- LLM traffic control: fleet-wide pacing, provider pauses, spend, deferred messages ---
# Operational state, not facts: rows are updated in place (see specstress.llm.traffic.limits).

# One row per (base_url, model_id, API-key variable). Times are seconds since the epoch on the
# database's clock, which every process shares, so hosts with skewed clocks still agree.
llm_rate_limits = Table(
    "llm_rate_limits",
    metadata,
    Column("limit_key", String(64), primary_key=True),
    Column("base_url", Text, nullable=False),
    Column("model_id", Text, nullable=False),
    Column("api_key_env", String(128)),
    # theoretical arrival times of the request and token buckets (GCRA)
    Column("request_tat", Float, nullable=False, server_default="0"),
    Column("token_tat", Float, nullable=False, server_default="0"),
    # no call starts before this: the provider asked the whole fleet to wait
    Column("blocked_until", Float, nullable=False, server_default="0"),
    # share of the limit the fleet aims for: halved on a 429, raised again by successes
    Column("rate_factor", Float, nullable=False, server_default="1"),
    Column("throttled_at", Float, nullable=False, server_default="0"),
    # per-minute limits the provider announced in its rate-limit headers
    Column("learned_requests_per_minute", Integer),
    Column("learned_tokens_per_minute", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# A provider account (base_url, API-key variable) that reported exhausted quota or money.
llm_provider_pauses = Table(
    "llm_provider_pauses",
    metadata,
    Column("provider_key", String(64), primary_key=True),
    Column("base_url", Text, nullable=False),
    Column("api_key_env", String(128)),
    # the model whose call ran into it
    Column("model_key", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("paused_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # null: until someone clears it (`specstress providers resume`)
    Column("paused_until", DateTime(timezone=True)),
)

# Running spend of paid answers, kept in the transaction that writes their ledger row; spread
# over a few rows so concurrent writers do not queue on one.
llm_spend = Table(
    "llm_spend",
    metadata,
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("tokens", BigInteger, nullable=False, server_default="0"),
)

# How often a message was put back because its work had to wait (not because it failed).
message_deferrals = Table(
    "message_deferrals",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("stream_sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("deferrals", Integer, nullable=False),
    Column("last_reason", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- batch mode: requests answered through the providers' batch APIs (specstress.llm.batches.coordinator) ---
# Operational state like the tables above; the answers themselves land in `llm_calls`.

# One job at a provider: an OpenAI batch (with its uploaded input file) or an Anthropic message
# batch, always of one stage and one model.
llm_batch_jobs = Table(
    "llm_batch_jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("stage", String(32), nullable=False),
    Column("model_key", String(64), nullable=False),
    Column("protocol", String(16), nullable=False),
    # submitting: being sent (its sender holds an advisory lock on the job); submitted: at the
    # provider; ended: results stored; released: never reached the provider, its requests went
    # back to the queue; failed: the provider refused it, its requests are answered online
    Column("status", String(16), nullable=False),
    Column("provider_batch_id", Text, unique=True),
    Column("input_file_id", Text),
    # the provider's own word for the job's state, as last polled
    Column("provider_status", String(32)),
    Column("request_count", Integer, nullable=False),
    Column("succeeded_count", Integer, nullable=False, server_default="0"),
    Column("errored_count", Integer, nullable=False, server_default="0"),
    Column("expired_count", Integer, nullable=False, server_default="0"),
    Column("canceled_count", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    _created_at(),
    Column("submitted_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("next_poll_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "status IN ('submitting', 'submitted', 'ended', 'released', 'failed')", name="status"
    ),
    Index("ix_llm_batch_jobs_stage_status", "stage", "status", "next_poll_at"),
)

# Every request a batch-mode stage asked for, keyed by the gateway's request hash (which is
# also the item's custom_id in its job), so it is queued once and sent in at most one job.
llm_batch_requests = Table(
    "llm_batch_requests",
    metadata,
    Column("request_hash", String(64), primary_key=True),
    Column("stage", String(32), nullable=False),
    Column("model_key", String(64), nullable=False),
    # the request body as the protocol sends it online (no secrets: keys travel in headers);
    # dropped once the answer is in the ledger
    Column("body", JSONB),
    # its size as compact JSON, so a job is cut to the API's size limit without loading bodies
    Column("body_bytes", Integer, nullable=False),
    # pending: waiting to be sent; submitted: in job_id; succeeded: answer in llm_calls;
    # failed: the batch could not answer it, so it is called online
    Column("status", String(16), nullable=False),
    Column("job_id", String(32), ForeignKey("llm_batch_jobs.job_id")),
    Column("error", Text),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('pending', 'submitted', 'succeeded', 'failed')", name="status"),
    Index(
        "ix_llm_batch_requests_queue",
        "stage",
        "model_key",
        "created_at",
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_llm_batch_requests_job_id", "job_id"),
)

# --- analysis: the config's definitions mirrored for the SQL views, and judges' citations ---
# `specstress init` and `specstress report` replace the mirror rows from the config, so views
# resolve model sets, vendors and outlier settings the way the config defines them.

model_set_rules = Table(
    "model_set_rules",
    metadata,
    Column("model_set", String(64), primary_key=True),
    # a model key, "family:<name>" or "*", as written in the config
    Column("member", String(80), primary_key=True),
)

model_vendors = Table(
    "model_vendors",
    metadata,
    Column("model_key", String(64), primary_key=True),
    Column("vendor", String(64), nullable=False),
)

analysis_settings = Table(
    "analysis_settings",
    metadata,
    Column("settings_id", Integer, primary_key=True),
    Column("outlier_min_gap", Integer, nullable=False),
    # exact decimal, so ceil(share * (n - 1)) has no floating-point surprises
    Column("outlier_share", Numeric(7, 6), nullable=False),
    CheckConstraint("settings_id = 1", name="single_row"),
)

# the anchored sections of every configured spec version, so reports can name what was cited
spec_sections = Table(
    "spec_sections",
    metadata,
    Column("spec_id", String(64), primary_key=True),
    Column("spec_version", String(64), primary_key=True),
    Column("anchor", Text, primary_key=True),
    # order of the section in the document, from 1
    Column("position", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("authority", String(64)),
)

verdict_citations = Table(
    "verdict_citations",
    metadata,
    Column("verdict_id", ID, ForeignKey("verdicts.verdict_id"), primary_key=True),
    Column("anchor", Text, primary_key=True),
    # 1 = the section the judge cited first
    Column("rank", Integer, nullable=False),
)

# --- diversity selection (method 2.4) ---
# A vector is `dim` little-endian float32 values, unit-normalised, in a plain bytea: pgvector is
# not packaged for this PostgreSQL 15 (Debian bookworm), and selection reads every vector into
# numpy anyway, which bytea feeds without a per-number decode.

# every text ever embedded, so none is paid for twice
embedding_cache = Table(
    "embedding_cache",
    metadata,
    # hash of what shapes a vector: provider, endpoint, model id, dimension, request params
    Column("embedder_hash", String(64), primary_key=True),
    # sha256 of the UTF-8 text
    Column("text_hash", String(64), primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    _created_at(),
    CheckConstraint("octet_length(vector) = 4 * dim", name="vector_size"),
)

scenario_embeddings = Table(
    "scenario_embeddings",
    metadata,
    # first in the key: selection reads one model's vectors in scenario order
    Column("embedding_key", String(64), primary_key=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), primary_key=True),
    # the embedder's identity (as in embedding_cache): one key never mixes two models' vectors
    Column("embedder_hash", String(64), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    _created_at(),
    CheckConstraint("octet_length(vector) = 4 * dim", name="vector_size"),
)

# named selections: recomputing one replaces its members in one transaction
selections = Table(
    "selections",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("method", String(16), nullable=False),
    # the stop distance (0.4 plain, 0.8 weighted in the paper)
    Column("delta", Float, nullable=False),
    # the model set whose disagreement D weights the distances; null = unweighted
    Column("weighted_by", String(64)),
    Column("seed", BigInteger, nullable=False),
    Column("embedding_key", String(64), nullable=False),
    # scenarios the selection ran over, and how many it kept
    Column("candidates", Integer, nullable=False),
    Column("selected", Integer, nullable=False),
    _created_at(),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("method IN ('exact', 'partitioned')", name="method"),
)

selection_members = Table(
    "selection_members",
    metadata,
    Column(
        "selection",
        String(64),
        ForeignKey("selections.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), primary_key=True),
    # pick order, from 0 (the seeded start)
    Column("rank", Integer, nullable=False),
    # (weighted) distance to the earlier picks when picked; null for the first pick
    Column("pick_distance", Float),
    UniqueConstraint("selection", "rank", name="uq_selection_members_rank"),
)


# --- the watcher: models the providers list, and what each release changes ---

# Every model id a watched provider account listed. Operational state: seen times and status
# change as the listings do.
discovered_models = Table(
    "discovered_models",
    metadata,
    Column("provider", String(64), primary_key=True),
    Column("model_id", Text, primary_key=True),
    # the target model key it is (or would be) registered as; null when no rule matched
    Column("model_key", String(64)),
    Column("display_name", Text),
    # the provider's creation date of the model, when its listing gives one
    Column("provider_created_at", DateTime(timezone=True)),
    # the rule that matched; null for ids of models the config file defines, or none matched
    Column("rule", String(64)),
    Column("family", String(64)),
    # proposed: waits for a person (or its budget); registered: a target; ignored: no rule
    # wants it; retired: no longer listed (or deprecated) by its provider
    Column("status", String(16), nullable=False),
    # the entry it gets when registered (a ModelConfig as JSON)
    Column("entry", JSONB),
    # the backfill cost estimate and how it was reached, when one was made
    Column("estimate_usd", Float),
    Column("estimate", JSONB),
    # why it has its status, for people (e.g. "over budget", "daily limit reached")
    Column("note", Text, nullable=False, server_default=""),
    Column("first_seen", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_seen", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("registered_at", DateTime(timezone=True)),
    Column("retired_at", DateTime(timezone=True)),
    # when every scenario had its answer, classification and verdicts (the release report ran)
    Column("backfill_completed_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('proposed', 'registered', 'ignored', 'retired')", name="status"),
    Index("ix_discovered_models_model_key", "model_key"),
)

# The release report of a model: how it compares with its family and its predecessor.
model_comparisons = Table(
    "model_comparisons",
    metadata,
    Column("model_key", String(64), primary_key=True),
    Column("against", String(64), primary_key=True),
    Column("family", String(64), nullable=False),
    # the whole comparison (specstress.watch.compare.Comparison as JSON)
    Column("body", JSONB, nullable=False),
    # change of the family's majority flag rate that the model brings; null without a spec
    Column("flag_rate_shift", Float),
    Column("computed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
