"""The one configuration file: YAML, validated by pydantic, unknown keys rejected.

Strings may hold `${VAR}` or `${VAR:-default}`; they are expanded from the environment before
validation so one file serves a laptop, CI and a server. API keys are never written in the file:
a model names the environment variable that holds its key.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from specstress.errors import InputError

__all__ = [
    "ANTHROPIC_DEFAULT_MAX_TOKENS",
    "BATCH_MIN_DEFERRALS",
    "BATCH_RECHECK_MAX_SECONDS",
    "BATCH_WINDOW_SECONDS",
    "MAX_CONFIG_BYTES",
    "RESERVED_PARAMS",
    "AnthropicThinking",
    "BatchMode",
    "Budget",
    "BusConfig",
    "Config",
    "Disagreement",
    "EmbeddingConfig",
    "GeminiThinking",
    "Key",
    "Labels",
    "ModelConfig",
    "OpenAIReasoning",
    "Outliers",
    "Prices",
    "RateLimits",
    "Reasoning",
    "RetryPolicy",
    "Roles",
    "Sampling",
    "SpecConfig",
    "StageBatches",
    "Strict",
    "TaxonomyConfig",
    "Timeouts",
    "WeightedModel",
    "load_config",
]

# Keys become NATS subject tokens, metric labels and JSON keys: keep them to a safe alphabet.
Key = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
MAX_CONFIG_BYTES = 1_000_000
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _key_from_env(owner: str, variable: str | None) -> SecretStr | None:
    """The API key in `variable`, None when no variable is named; an unset one is an error."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise InputError(f"{owner}: environment variable {variable} is not set")
    return SecretStr(value)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Strict):
    connect_seconds: float = Field(10.0, gt=0)
    read_seconds: float = Field(300.0, gt=0)


class RetryPolicy(Strict):
    max_attempts: int = Field(6, ge=1, le=50)
    base_seconds: float = Field(0.5, gt=0)
    cap_seconds: float = Field(60.0, gt=0)


class RateLimits(Strict):
    """A provider's per-minute limits for this (base_url, model_id, api_key_env), shared by
    every process of every service. Unset = learned from the provider's rate-limit headers."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    # a slot further away than this is not waited for: the message goes back to the bus
    max_wait_seconds: float = Field(30.0, ge=0)
    # counted against the token limit until the real usage is known, when params set no maximum
    assumed_output_tokens: int = Field(1024, ge=0)

    @property
    def configured(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


class Budget(Strict):
    """The most a run (this database) may spend; unset = no cap. Once reached, no paid call
    starts and the work waits on the bus; raise it and restart the services to continue."""

    max_cost_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)

    @property
    def capped(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens is not None

    def spent_by(self, cost_usd: float, tokens: int) -> str | None:
        """Why the budget is spent after paying `cost_usd` and `tokens`; None while it is not."""
        if self.max_cost_usd is not None and cost_usd >= self.max_cost_usd:
            return (
                f"run budget spent: ${cost_usd:.2f} of ${self.max_cost_usd:.2f}; "
                "raise budget.max_cost_usd to continue"
            )
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return (
                f"run budget spent: {tokens} of {self.max_tokens} tokens; "
                "raise budget.max_tokens to continue"
            )
        return None


class Prices(Strict):
    """US dollars per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)
    cached_input_per_mtok: float = Field(0.0, ge=0)
    # Writing a prompt-cache entry: Anthropic charges 1.25x input for it; unset = input price.
    cache_write_input_per_mtok: float | None = Field(None, ge=0)
    # Share of the price the batch APIs take off (OpenAI Batch and Anthropic Message Batches
    # both charge half): an answer that came back in a batch costs (1 - batch_discount) x.
    batch_discount: float = Field(0.5, ge=0, le=1)


class OpenAIReasoning(Strict):
    """`reasoning_effort` of OpenAI reasoning models (and compatible servers that take it)."""

    protocol: Literal["openai"] = "openai"
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class AnthropicThinking(Strict):
    """Anthropic extended thinking: `thinking: {type: enabled, budget_tokens}`."""

    protocol: Literal["anthropic"] = "anthropic"
    budget_tokens: int = Field(ge=1024)


class GeminiThinking(Strict):
    """Gemini `thinkingConfig`: a token budget (-1 = dynamic, 0 = off) or, for models that
    take it instead, a thinking level; `include_thoughts` returns the thought summaries."""

    protocol: Literal["gemini"] = "gemini"
    budget_tokens: int | None = Field(None, ge=-1)
    level: Literal["minimal", "low", "medium", "high"] | None = None
    include_thoughts: bool = True

    @model_validator(mode="after")
    def _budget_or_level(self) -> GeminiThinking:
        if self.budget_tokens is not None and self.level is not None:
            raise ValueError("set budget_tokens or level, not both")
        return self


# answer room when an Anthropic model's params set no max_tokens (the API requires one)
ANTHROPIC_DEFAULT_MAX_TOKENS = 8192
# The model's own `protocol` picks the variant; the YAML does not repeat it.
Reasoning = Annotated[
    OpenAIReasoning | AnthropicThinking | GeminiThinking, Field(discriminator="protocol")
]
# Request fields each adapter sets itself; in `params` they would fight with it.
RESERVED_PARAMS: dict[str, frozenset[str]] = {
    "openai": frozenset({"model", "messages", "response_format", "reasoning_effort", "stream"}),
    "anthropic": frozenset(
        {"model", "messages", "system", "tools", "tool_choice", "thinking", "stream"}
    ),
    "gemini": frozenset(
        {
            "contents",
            "systemInstruction",
            "responseMimeType",
            "responseSchema",
            "responseJsonSchema",
            "thinkingConfig",
        }
    ),
}


class ModelConfig(Strict):
    """One model endpoint. `family` groups models for model sets and specs."""

    key: Key
    family: Key
    # who makes the model; marks a judge ruling on its own maker's model. Unset = the family.
    vendor: Key | None = None
    # openai: chat completions, base_url up to /v1; anthropic: Messages API, base_url the API
    # root (https://api.anthropic.com); gemini: generateContent, base_url the API root
    # (https://generativelanguage.googleapis.com)
    protocol: Literal["openai", "anthropic", "gemini"] = "openai"
    base_url: str
    model_id: str
    api_key_env: str | None = None
    # request fields as the protocol spells them (Gemini: generationConfig fields)
    params: dict[str, Any] = Field(default_factory=dict)
    reasoning: Reasoning | None = None
    # ask for JSON-schema output natively; off for endpoints that reject response schemas
    structured_output: bool = True
    # whether the endpoint takes its protocol's batch API when a stage runs in batch mode:
    # off for OpenAI-compatible servers without /v1/batches; Gemini models are always online
    batch_api: bool = True
    # calls in flight per process; the fleet as a whole is paced by `limits`
    max_concurrency: int = Field(16, ge=1, le=4096)
    limits: RateLimits = RateLimits()
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    prices: Prices = Prices()
    simulated: bool = False

    @model_validator(mode="before")
    @classmethod
    def _reasoning_takes_the_protocol(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("reasoning"), dict):
            reasoning = data["reasoning"]
            if "protocol" in reasoning:
                raise ValueError("reasoning: do not set `protocol` here; the model's own applies")
            data = {**data, "reasoning": {**reasoning, "protocol": data.get("protocol", "openai")}}
        return data

    @model_validator(mode="after")
    def _params_fit_the_protocol(self) -> ModelConfig:
        reserved = sorted(RESERVED_PARAMS[self.protocol] & self.params.keys())
        if reserved:
            raise ValueError(
                f"params: {', '.join(reserved)} set by specstress itself "
                "(reasoning settings go under `reasoning`)"
            )
        if self.protocol == "anthropic":
            max_tokens = self.params.get("max_tokens")
            if max_tokens is not None and (
                isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
            ):
                raise ValueError("params.max_tokens must be a positive integer")
            if isinstance(self.reasoning, AnthropicThinking):
                if max_tokens is not None and max_tokens <= self.reasoning.budget_tokens:
                    raise ValueError(
                        "params.max_tokens must exceed reasoning.budget_tokens (thinking "
                        "tokens count towards max_tokens)"
                    )
                if self.params.get("temperature", 1) != 1 or "top_k" in self.params:
                    raise ValueError("extended thinking allows neither temperature nor top_k")
        return self

    def max_output_tokens(self) -> int:
        """Anthropic's required `max_tokens`: from params, else room for thinking plus answer."""
        configured = self.params.get("max_tokens")
        if isinstance(configured, int):
            return configured
        thinking = self.reasoning if isinstance(self.reasoning, AnthropicThinking) else None
        return ANTHROPIC_DEFAULT_MAX_TOKENS + (thinking.budget_tokens if thinking else 0)

    def recorded_params(self) -> dict[str, Any]:
        """The settings that shape an answer, as stored with it: params plus reasoning."""
        if self.reasoning is None:
            return dict(self.params)
        return {**self.params, "reasoning": self.reasoning.model_dump(exclude={"protocol"})}

    def api_key(self) -> SecretStr | None:
        return _key_from_env(f"model {self.key!r}", self.api_key_env)


class EmbeddingConfig(Strict):
    """The embedding model used for diversity selection and value mapping.

    `provider`: `openai` (POST {base_url}/embeddings, OpenAI-compatible), `gemini`
    (batchEmbedContents; base_url the API root) or `local` (a sentence-transformers model folder
    at `path`, by default the all-MiniLM-L6-v2 copy of the `local-embeddings` extra). Vectors are
    stored per `key`; `dimension` is checked against every answer. `params` go into each request
    as the provider spells them (OpenAI `dimensions`, Gemini `taskType`, `outputDimensionality`).
    """

    key: Key
    provider: Literal["openai", "gemini", "local"]
    model_id: str = Field(min_length=1)
    dimension: int = Field(ge=1, le=65536)
    base_url: str | None = None
    api_key_env: str | None = None
    path: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # texts per request (Gemini accepts at most 100; OpenAI 2048)
    batch_size: int = Field(64, ge=1, le=2048)
    max_concurrency: int = Field(4, ge=1, le=256)
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    prices: Prices = Prices()
    simulated: bool = False

    @model_validator(mode="after")
    def _fits_the_provider(self) -> EmbeddingConfig:
        if self.provider == "local":
            if self.base_url is not None or self.api_key_env is not None:
                raise ValueError("a local embedding model takes `path`, not base_url/api_key_env")
        else:
            if self.base_url is None:
                raise ValueError(f"an {self.provider} embedding model needs `base_url`")
            if self.path is not None:
                raise ValueError("`path` is for local embedding models only")
        if self.provider == "gemini" and self.batch_size > 100:
            raise ValueError("batch_size: Gemini takes at most 100 texts per batch")
        return self

    def api_key(self) -> SecretStr | None:
        return _key_from_env(f"embedding {self.key!r}", self.api_key_env)


class WeightedModel(Strict):
    model: Key
    weight: int = Field(1, ge=1, le=1000)


class Roles(Strict):
    generators: list[WeightedModel] = Field(min_length=1)
    targets: list[Key] = Field(min_length=2)
    spectrum: Key
    classifier: Key
    judges: list[Key] = Field(min_length=1)
    # labellers of topics, refusal types and distinctive values; unset = the classifier model
    topic: Key | None = None
    refusal: Key | None = None
    distinctive_values: Key | None = None


class SpecConfig(Strict):
    """A model spec and the model families it governs. `path` may be `builtin:example`."""

    id: Key
    version: str = Field(min_length=1, max_length=64)
    path: str
    families: list[Key] = Field(min_length=1)


class TaxonomyConfig(Strict):
    """`builtin` or a folder/file in the Values-in-the-Wild `values_tree.csv` format."""

    source: str = "builtin"


class Sampling(Strict):
    seed: int = 0
    pairs: int = Field(20, ge=1)


class Disagreement(Strict):
    threshold: float = Field(1.5, gt=0)


class Outliers(Strict):
    """An answer is an outlier on a value when its position is at least `min_gap` away from
    those of at least ceil(share * (n - 1)) of the other n - 1 answers in its model set."""

    min_gap: int = Field(4, ge=1, le=6)
    share: float = Field(0.75, gt=0, le=1)


class Labels(Strict):
    """Which answers get a refusal type: every classified answer, or only those on scenarios
    that some model set flags for high disagreement."""

    refusal_types: Literal["all", "flagged"] = "all"


# A batch is answered within this window or its unanswered requests expire (both batch APIs).
BATCH_WINDOW_SECONDS = 24 * 3600.0
# The longest a message waiting for a batch stays away before it looks again.
BATCH_RECHECK_MAX_SECONDS = 300.0
# Deferrals a message may need to wait out a whole window: ramping up to the longest recheck,
# then one every BATCH_RECHECK_MAX_SECONDS.
BATCH_MIN_DEFERRALS = math.ceil(BATCH_WINDOW_SECONDS / BATCH_RECHECK_MAX_SECONDS) + 32


class BatchMode(Strict):
    """A stage's use of the batch APIs (OpenAI Batch, Anthropic Message Batches): its calls are
    gathered into batch jobs, answered within 24 h at the batch price. Models of other
    protocols, or with `batch_api: false`, are called online as usual."""

    enabled: bool = False
    # requests per job (both APIs also cap a job's size in bytes; a job is cut to fit)
    max_requests_per_batch: int = Field(1000, ge=1, le=50_000)
    # how long requests are gathered before a job smaller than max_requests_per_batch is sent
    max_wait_seconds: float = Field(300.0, ge=0)
    # how often a submitted job's status is asked for
    poll_seconds: float = Field(60.0, gt=0)


class StageBatches(Strict):
    """Batch mode per stage, for the stages that are not latency-sensitive."""

    responder: BatchMode = BatchMode()
    classifier: BatchMode = BatchMode()
    compliance_judge: BatchMode = BatchMode()

    def for_stage(self, stage: str) -> BatchMode | None:
        """The stage's settings; None for a stage that has no batch mode."""
        if stage not in StageBatches.model_fields:
            return None
        mode: BatchMode = getattr(self, stage)
        return mode


class BusConfig(Strict):
    stream: str = Field("SPECSTRESS", pattern=r"^[A-Z][A-Z0-9_]{0,31}$")
    max_deliver: int = Field(5, ge=1, le=100)
    # handlers send in-progress heartbeats, so this bounds redelivery after a crash only
    ack_wait_seconds: float = Field(30.0, ge=3)
    # Messages of one consumer the fleet keeps in hand at once. A message waiting on a model
    # costs no CPU, so with calls that take seconds the rate is in_flight / latency: this must
    # reach the rate the CPU allows times the slowest call. Derived from it: each consumer's
    # MaxAckPending (unless max_ack_pending is set higher), how many messages of a consumer one
    # process takes at once, each service's Postgres pool and its gateway's HTTP connections.
    target_in_flight: int = Field(256, ge=1, le=100_000)
    # unacknowledged messages of one consumer beyond those in hand: batch mode's waiting
    # messages count here (default: target_in_flight)
    max_ack_pending: int | None = Field(None, ge=1)
    duplicate_window_seconds: float = Field(600.0, ge=1)
    # copies of the stream kept by a JetStream cluster (1 on a single server; 3 survives a node)
    replicas: int = Field(1, ge=1, le=5)
    # Waiting is not failing: a message put back because its provider is paused, the budget is
    # spent or a rate limit is far away comes back after defer_seconds and does not count
    # towards max_deliver; after max_deferrals such returns it is dead-lettered all the same.
    defer_seconds: float = Field(300.0, gt=0, le=300)
    max_deferrals: int = Field(1000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _no_removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "fetch_batch" in data:
            raise ValueError(
                "fetch_batch is no longer read: set target_in_flight, the messages of one "
                "consumer the fleet keeps in hand (each process takes up to that many at once)"
            )
        return data

    @model_validator(mode="after")
    def _pending_holds_the_target(self) -> BusConfig:
        if self.max_ack_pending is not None and self.max_ack_pending < self.target_in_flight:
            raise ValueError(
                f"max_ack_pending ({self.max_ack_pending}) is below target_in_flight "
                f"({self.target_in_flight}): the fleet could never hold its target in hand"
            )
        return self

    @property
    def ack_pending(self) -> int:
        """JetStream's MaxAckPending for every consumer."""
        return self.max_ack_pending or self.target_in_flight


class TextCaps(Strict):
    """How much of a model's text is stored, in characters; the rest is cut and the cut recorded
    in the row's `cut` column. A few pages of answer and a page of reasoning are plenty for the
    analysis; megabytes would only fill the database and every prompt that quotes them."""

    answer_chars: int = Field(65_536, ge=1024)
    thinking_chars: int = Field(65_536, ge=1024)
    reasoning_chars: int = Field(16_384, ge=256)


class ModelTemplate(Strict):
    """The entry a discovered model gets: everything of a model endpoint except where it is
    (the provider account's) and what it is called (the listed id). `prices` or `price_table`
    (a table of `watch.price_tables`, looked up by model id) sets what it costs."""

    params: dict[str, Any] = Field(default_factory=dict)
    reasoning: dict[str, Any] | None = None
    structured_output: bool = True
    batch_api: bool = True
    max_concurrency: int = Field(16, ge=1, le=4096)
    limits: RateLimits = RateLimits()
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    prices: Prices | None = None
    price_table: Key | None = None

    @model_validator(mode="after")
    def _one_price_source(self) -> ModelTemplate:
        if self.prices is not None and self.price_table is not None:
            raise ValueError("set prices or price_table, not both")
        return self


# a model id pattern: a shell glob (`claude-*`), or a regular expression after `re:`
_PATTERN_HELP = "a glob such as 'gpt-5*' or a regular expression written 're:^gpt-5'"


def _check_pattern(pattern: str) -> str:
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression ({exc})") from None
    elif not pattern:
        raise ValueError(f"empty pattern; use {_PATTERN_HELP}")
    return pattern


Pattern = Annotated[str, Field(min_length=1, max_length=300)]


class WatchRule(Strict):
    """What to do with a newly listed model whose id matches `include` and no `exclude`."""

    name: Key
    include: list[Pattern] = Field(min_length=1)
    exclude: list[Pattern] = Field(default_factory=list)
    family: Key
    vendor: Key | None = None
    # put before the model id to make the model's key (ids are lower-cased, other characters
    # than letters, digits, '-' and '_' become '-')
    key_prefix: str = Field("", pattern=r"^[a-z0-9_\-]{0,20}$")
    template: ModelTemplate = ModelTemplate()
    # register: registered and backfilled at once (within budget); propose: recorded for a
    # person to register with `specstress models add --discovered KEY`
    action: Literal["register", "propose"] = "propose"
    # registrations by this rule per rolling 24 hours; more stay proposed
    max_new_per_day: int = Field(3, ge=0, le=1000)
    # the most a model's backfill may cost (answers, classification, judging) to start itself
    backfill_budget_usd: float = Field(10.0, ge=0)
    # the model a release is compared with; unset = the family's most recent other model
    predecessor: Key | None = None

    @model_validator(mode="after")
    def _patterns_compile(self) -> WatchRule:
        for pattern in (*self.include, *self.exclude):
            _check_pattern(pattern)
        return self


class WatchProvider(Strict):
    """One provider account whose model list is watched: where it is, its protocol and key."""

    key: Key
    protocol: Literal["openai", "anthropic", "gemini"] = "openai"
    base_url: str
    api_key_env: str | None = None
    timeouts: Timeouts = Timeouts(read_seconds=60.0)
    retry: RetryPolicy = RetryPolicy(max_attempts=3)
    limits: RateLimits = RateLimits(assumed_output_tokens=0)
    rules: list[WatchRule] = Field(default_factory=list)
    simulated: bool = False

    @model_validator(mode="after")
    def _rule_names_unique(self) -> WatchProvider:
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rules: duplicate name(s) {duplicates}")
        return self

    def api_key(self) -> SecretStr | None:
        return _key_from_env(f"watch provider {self.key!r}", self.api_key_env)


class Watch(Strict):
    """The watcher: which provider accounts it lists, how often, and what it does with news."""

    # seconds between listings, each spread by up to +-jitter of itself
    poll_seconds: float = Field(3600.0, ge=1)
    jitter: float = Field(0.1, ge=0, lt=1)
    # how often registered models are checked for a finished backfill
    check_seconds: float = Field(60.0, ge=0.2)
    # a release whose family's majority flag rate moves by more than this is reported (alert)
    flag_rate_shift_alert: float = Field(0.1, ge=0, le=1)
    # named price tables: model id pattern (glob or re:) -> prices; first match wins
    price_tables: dict[Key, dict[Pattern, Prices]] = Field(default_factory=dict)
    providers: list[WatchProvider] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> Watch:
        keys = [p.key for p in self.providers]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"providers: duplicate key(s) {duplicates}")
        for name, table in self.price_tables.items():
            for pattern in table:
                try:
                    _check_pattern(pattern)
                except ValueError as exc:
                    raise ValueError(f"price_tables.{name}: {exc}") from None
        for provider in self.providers:
            for rule in provider.rules:
                where = f"providers.{provider.key}.rules.{rule.name}"
                table_name = rule.template.price_table
                if table_name is not None and table_name not in self.price_tables:
                    raise ValueError(f"{where}: unknown price table {table_name!r}")
                try:
                    ModelConfig.model_validate(
                        {
                            **rule.template.model_dump(
                                exclude={"prices", "price_table"}, exclude_none=True
                            ),
                            "key": "template-check",
                            "family": rule.family,
                            "protocol": provider.protocol,
                            "base_url": provider.base_url,
                            "model_id": "template-check",
                        }
                    )
                except ValidationError as exc:
                    first = exc.errors()[0]
                    raise ValueError(f"{where}.template: {first['msg']}") from None
        return self


class LedgerSettings(Strict):
    """What the gateway does with a paid answer while Postgres cannot take its ledger row:
    hold it in memory and retry for `hold_seconds` (at most `max_held` answers at once), then
    append it to a file under `spill_dir` (relative paths: the service's working folder) that
    is written into the ledger before the next paid call, and on the service's next start."""

    spill_dir: str = ".specstress/spill"
    hold_seconds: float = Field(60.0, ge=0)
    max_held: int = Field(256, ge=0)


class LLMSettings(Strict):
    ledger: LedgerSettings = LedgerSettings()


class Config(Strict):
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/specstress"
    taxonomy: TaxonomyConfig = TaxonomyConfig()
    sampling: Sampling = Sampling()
    models: list[ModelConfig] = Field(min_length=1)
    roles: Roles
    # members: model keys, "family:<name>" or "*" (every active target model)
    model_sets: dict[Key, list[str]] = Field(min_length=1)
    specs: list[SpecConfig] = Field(default_factory=list)
    disagreement: Disagreement = Disagreement()
    outliers: Outliers = Outliers()
    labels: Labels = Labels()
    embedding: EmbeddingConfig | None = None
    bus: BusConfig = BusConfig()
    batch: StageBatches = StageBatches()
    budget: Budget = Budget()
    llm: LLMSettings = LLMSettings()
    prompts_dir: str | None = None
    text_caps: TextCaps = TextCaps()

    watch: Watch = Watch()

    @model_validator(mode="after")
    def _references_resolve(self) -> Config:
        keys = [m.key for m in self.models]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"models: duplicate key(s) {duplicates}")
        known = set(keys)
        families = {m.family for m in self.models}
        role_refs = [
            *(("roles.generators", g.model) for g in self.roles.generators),
            *(("roles.targets", t) for t in self.roles.targets),
            ("roles.spectrum", self.roles.spectrum),
            ("roles.classifier", self.roles.classifier),
            *(
                (f"roles.{role}", ref)
                for role, ref in (
                    ("topic", self.roles.topic),
                    ("refusal", self.roles.refusal),
                    ("distinctive_values", self.roles.distinctive_values),
                )
                if ref is not None
            ),
            *(("roles.judges", j) for j in self.roles.judges),
        ]
        for where, ref in role_refs:
            if ref not in known:
                raise ValueError(f"{where}: unknown model {ref!r}")
        for name, members in self.model_sets.items():
            if not members:
                raise ValueError(f"model_sets.{name}: no members")
            for member in members:
                if member == "*":
                    continue
                if member.startswith("family:"):
                    if member[len("family:") :] not in families:
                        raise ValueError(f"model_sets.{name}: unknown family in {member!r}")
                elif member not in known:
                    raise ValueError(f"model_sets.{name}: unknown model {member!r}")
        for spec in self.specs:
            for family in spec.families:
                if family not in families:
                    raise ValueError(f"specs.{spec.id}: unknown family {family!r}")
        return self

    @model_validator(mode="after")
    def _batches_fit_the_bus(self) -> Config:
        # A message whose answer waits in a batch stays unacknowledged and comes back now and
        # then: the bus must let enough of them wait, for long enough.
        for stage in StageBatches.model_fields:
            mode = self.batch.for_stage(stage)
            if mode is None or not mode.enabled:
                continue
            if mode.max_requests_per_batch > self.bus.ack_pending:
                raise ValueError(
                    f"batch.{stage}.max_requests_per_batch ({mode.max_requests_per_batch}) is "
                    f"larger than bus.max_ack_pending ({self.bus.ack_pending}): messages "
                    "waiting for a batch stay unacknowledged, so no batch could fill; raise "
                    "bus.max_ack_pending"
                )
            if self.bus.max_deferrals < BATCH_MIN_DEFERRALS:
                raise ValueError(
                    f"batch.{stage}: batch mode needs bus.max_deferrals >= "
                    f"{BATCH_MIN_DEFERRALS} so a message can wait out a batch's 24 h window"
                )
        return self

    def model(self, key: str) -> ModelConfig:
        for m in self.models:
            if m.key == key:
                return m
        raise KeyError(key)

    def api_key_envs(self) -> list[str]:
        """Every environment variable that holds a key: models, embedding, watched accounts."""
        envs = [m.api_key_env for m in self.models]
        envs += [p.api_key_env for p in self.watch.providers]
        if self.embedding is not None:
            envs.append(self.embedding.api_key_env)
        return sorted({e for e in envs if e is not None})

    def model_set_members(self, name: str, available: list[tuple[str, str]]) -> list[str]:
        """Keys of `available` (model key, family) pairs that belong to the named set."""
        wanted = self.model_sets[name]
        return [
            key
            for key, family in available
            if "*" in wanted or key in wanted or f"family:{family}" in wanted
        ]

    def spec_for_family(self, family: str) -> SpecConfig | None:
        for spec in self.specs:
            if family in spec.families:
                return spec
        return None


def _expand_env(node: Any) -> Any:
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    raise InputError(f"environment variable {name} is referenced but not set")
                return default
            return value

        return _ENV_REF.sub(replace, node)
    if isinstance(node, list):
        return [_expand_env(item) for item in node]
    if isinstance(node, dict):
        return {key: _expand_env(value) for key, value in node.items()}
    return node


def _first_error(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key {where!r}"
    return f"{path}: {where}: {first['msg']}"


def load_config(path: str | Path) -> Config:
    """Read, expand and validate a config file; any problem raises one InputError naming it."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read config ({exc.strerror})") from None
    if len(raw_bytes) > MAX_CONFIG_BYTES:
        raise InputError(f"{path}: config larger than {MAX_CONFIG_BYTES} bytes")
    try:
        raw = yaml.safe_load(raw_bytes)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    if "NATS_URL" in os.environ:
        raw["nats_url"] = os.environ["NATS_URL"]
    if "DATABASE_URL" in os.environ:
        raw["database_url"] = os.environ["DATABASE_URL"]
    try:
        return Config.model_validate(_expand_env(raw))
    except ValidationError as exc:
        raise InputError(_first_error(path, exc)) from None
