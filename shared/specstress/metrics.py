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
llm_ledger_held = Gauge(
    f"{PREFIX}_llm_ledger_held",
    "Paid answers waiting in memory for their ledger row while Postgres is unreachable.",
)
llm_ledger_spilled = Counter(
    f"{PREFIX}_llm_ledger_spilled_total",
    "Paid answers written to the local spill file because the ledger stayed unreachable.",
)
