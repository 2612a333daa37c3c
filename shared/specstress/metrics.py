"""Prometheus metrics shared by every service; labels stay low-cardinality (no ids, no text)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "PREFIX",
    "budget_exhausted",
    "budget_used_ratio",
    "dead_letters",
    "handler_failures",
    "handler_latency",
    "llm_batch_jobs",
    "llm_batch_requests",
    "llm_calls",
    "llm_cost",
    "llm_deferred",
    "llm_latency",
    "llm_rate_factor",
    "llm_rate_wait",
    "llm_tokens",
    "messages_deferred",
    "messages_handled",
    "provider_paused",
]

PREFIX = "specstress"

messages_handled = Counter(
    f"{PREFIX}_messages_handled_total",
    "Bus messages a service finished handling, by outcome.",
    ["service", "subject", "outcome"],
)
handler_failures = Counter(
    f"{PREFIX}_handler_failures_total",
    "Handler failures by reason (the message is redelivered or dead-lettered).",
    ["service", "reason"],
)
handler_latency = Histogram(
    f"{PREFIX}_handler_duration_seconds",
    "Time spent in a message handler.",
    ["service", "subject"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
dead_letters = Counter(
    f"{PREFIX}_dead_letters_total",
    "Messages that exhausted their deliveries and were recorded as dead letters.",
    ["service", "subject"],
)
dead_letters_by_reason = Counter(
    f"{PREFIX}_dead_letters_by_reason_total",
    "Dead letters by the completeness stage whose unit they hold back and their reason code.",
    ["stage", "reason"],
)
# The completeness gauges, set by specstress.pipeline.progress.exporter; `service` is the one
# whose consumers do the stage's work.
pending_units = Gauge(
    f"{PREFIX}_pending_units",
    "Units of a completeness stage that are expected and neither done nor dead-lettered.",
    ["stage", "service"],
)
dead_lettered_units = Gauge(
    f"{PREFIX}_dead_lettered_units",
    "Units of a completeness stage held back by a dead letter that was not replayed.",
    ["stage", "service"],
)
oldest_pending_seconds = Gauge(
    f"{PREFIX}_oldest_pending_seconds",
    "Age of the oldest pending unit of a completeness stage (0 when none is pending).",
    ["stage", "service"],
)
run_settled = Gauge(
    f"{PREFIX}_run_settled",
    "1 when every expected unit has its result or a dead letter.",
)
run_complete = Gauge(
    f"{PREFIX}_run_complete",
    "1 when every expected unit has its result.",
)
llm_calls = Counter(
    f"{PREFIX}_llm_calls_total",
    "LLM HTTP attempts by model, stage and outcome (ok, cached, or an error class); answers "
    "that came in a batch job count as outcome batch.",
    ["model", "stage", "outcome"],
)
llm_tokens = Counter(
    f"{PREFIX}_llm_tokens_total",
    "Tokens used by LLM calls, by kind (input, output, cached, reasoning, cache_write).",
    ["model", "stage", "kind"],
)
llm_cost = Counter(
    f"{PREFIX}_llm_cost_usd_total",
    "Cost of LLM calls in US dollars from the configured prices.",
    ["model", "stage"],
)
llm_latency = Histogram(
    f"{PREFIX}_llm_request_duration_seconds",
    "Wall time of one LLM HTTP attempt.",
    ["model", "stage"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
llm_rate_wait = Histogram(
    f"{PREFIX}_llm_rate_limit_wait_seconds",
    "Time a call waited for its slot under the fleet-wide rate limit.",
    ["model"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30),
)
llm_rate_factor = Gauge(
    f"{PREFIX}_llm_rate_factor",
    "Share of the model's rate limit the fleet aims for (1 = all of it; lowered after 429s).",
    ["model"],
)
llm_deferred = Counter(
    f"{PREFIX}_llm_deferred_total",
    "LLM calls put off instead of made, by cause (rate_limit, provider_wait, provider_paused, "
    "budget).",
    ["model", "cause"],
)
provider_paused = Gauge(
    f"{PREFIX}_provider_paused",
    "1 while a provider account is paused for exhausted quota or money, as this process sees it.",
    ["provider", "key_env"],
)
budget_exhausted = Gauge(
    f"{PREFIX}_budget_exhausted",
    "1 when the run's cost or token budget is spent and no new paid call starts.",
)
budget_used_ratio = Gauge(
    f"{PREFIX}_budget_used_ratio",
    "Share of the run's budget spent, by kind (cost, tokens); only for the kinds that are capped.",
    ["kind"],
)
messages_deferred = Counter(
    f"{PREFIX}_messages_deferred_total",
    "Bus messages put back to wait (not failed), by cause.",
    ["service", "cause"],
)
llm_batch_jobs = Counter(
    f"{PREFIX}_llm_batch_jobs_total",
    "Provider batch jobs by what happened to them (submitted, ended, failed, released, recovered).",
    ["model", "stage", "outcome"],
)
llm_batch_requests = Counter(
    f"{PREFIX}_llm_batch_requests_total",
    "Requests of batch-mode stages by outcome (queued, succeeded, errored, expired, canceled).",
    ["model", "stage", "outcome"],
)

watch_polls = Counter(
    f"{PREFIX}_watch_polls_total",
    "Model listings of watched provider accounts, by outcome (ok, or an error class).",
    ["provider", "outcome"],
)
watch_discovered = Gauge(
    f"{PREFIX}_watch_discovered_models",
    "Models the watched providers listed, by status (proposed, registered, ignored, retired).",
    ["provider", "status"],
)
watch_registrations = Counter(
    f"{PREFIX}_watch_registrations_total",
    "Discovered models registered as targets, by provider and rule.",
    ["provider", "rule"],
)
watch_held = Counter(
    f"{PREFIX}_watch_held_total",
    "Registrations a rule wanted but held back, by reason (budget, daily_limit).",
    ["provider", "reason"],
)
watch_backfill_progress = Gauge(
    f"{PREFIX}_watch_backfill_progress_ratio",
    "Share of scenarios a newly registered model has answered and had classified.",
    ["model"],
)
release_flag_rate_shift = Gauge(
    f"{PREFIX}_release_flag_rate_shift",
    "Change a released model brought to its family's majority flag rate under its spec.",
    ["model", "family"],
)
release_flag_rate_shifted = Gauge(
    f"{PREFIX}_release_flag_rate_shifted",
    "1 when a release moved its family's majority flag rate by more than "
    "watch.flag_rate_shift_alert.",
    ["model", "family"],
)
llm_ledger_held = Gauge(
    f"{PREFIX}_llm_ledger_held",
    "Paid answers waiting in memory for their ledger row while Postgres is unreachable.",
)
llm_ledger_spilled = Counter(
    f"{PREFIX}_llm_ledger_spilled_total",
    "Paid answers written to the local spill file because the ledger stayed unreachable.",
)
