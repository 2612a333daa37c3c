"""What an answer costs and how calls show in Prometheus, for online and batch calls alike."""

from __future__ import annotations

import logging
from typing import Any

from specstress import metrics
from specstress.config import Prices
from specstress.llm.messages import Usage
from specstress.llm.protocol import Completion
from specstress.text import clean, storable

log = logging.getLogger(__name__)

__all__ = ["call_cost", "observe", "stored_answer"]


def stored_answer(completion: Completion) -> dict[str, Any]:
    """A paid answer as the ledger keeps it (`llm_calls.response`), for the cache to serve.

    Text Postgres cannot store (NUL, lone surrogates) is cleaned out here, before the ledger,
    and the cleaned fields are named under "cleaned": the answer is kept, not bought again.
    """
    text, text_cleaned = clean(completion.text)
    thinking, thinking_cleaned = (None, False)
    if completion.thinking is not None:
        thinking, thinking_cleaned = clean(completion.thinking)
    answer: dict[str, Any] = {
        "text": text,
        "thinking": thinking,
        "usage": completion.usage.model_dump(),
        "finish_reason": None
        if completion.finish_reason is None
        else storable(completion.finish_reason),
    }
    cleaned = [
        name for name, hit in (("text", text_cleaned), ("thinking", thinking_cleaned)) if hit
    ]
    if cleaned:
        answer["cleaned"] = cleaned
        log.warning("model output held NUL or invalid Unicode in %s; cleaned", ", ".join(cleaned))
    return answer


def call_cost(prices: Prices, usage: Usage) -> float:
    """US dollars at the online prices; each token is counted once, at its own price."""
    uncached = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
    write_price = prices.cache_write_input_per_mtok
    return (
        uncached * prices.input_per_mtok
        + usage.cached_tokens * prices.cached_input_per_mtok
        + usage.cache_write_tokens * (prices.input_per_mtok if write_price is None else write_price)
        + usage.output_tokens * prices.output_per_mtok
    ) / 1_000_000


def observe(
    model_key: str,
    stage: str,
    outcome: str,
    *,
    latency: float | None = None,
    usage: Usage | None = None,
    cost_usd: float = 0.0,
) -> None:
    """Prometheus: every attempt by outcome, plus the tokens and cost of paid answers."""
    metrics.llm_calls.labels(model_key, stage, outcome).inc()
    if latency is not None:
        metrics.llm_latency.labels(model_key, stage).observe(latency)
    if usage is None:
        return
    for kind, count in (
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cached", usage.cached_tokens),
        ("reasoning", usage.reasoning_tokens),
        ("cache_write", usage.cache_write_tokens),
    ):
        metrics.llm_tokens.labels(model_key, stage, kind).inc(count)
    metrics.llm_cost.labels(model_key, stage).inc(cost_usd)
