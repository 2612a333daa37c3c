"""Whether a paid call may start at all: provider pauses and the run budget.

A provider account (base_url and API-key variable) that answers with exhausted quota or money
is paused for the whole fleet, in `llm_provider_pauses`, and its calls are deferred instead of
made (`LLMDeferred` with class terminal_quota: the service runtime puts the message back with a
delay, it is not dead-lettered):
- out of money (insufficient_quota, billing, credit, spend limit, HTTP 402): until someone
  clears it with `specstress providers resume`, because waiting cannot fix it;
- out of a daily quota: for an hour, then one call tries again (a refused call costs nothing);
- when the provider named its own wait: that long.

The run budget (`budget.max_cost_usd`, `budget.max_tokens`) is checked against `llm_spend`,
the running total kept in the same transaction as each paid ledger row. Once it is reached no
paid call starts (answers already in the ledger are still served) and work is deferred.

Each process reads both at most once a second and adds its own spend in between, so a pause or
the budget takes effect across the fleet within about a second. What can still run past the
budget is bounded by the calls already in flight plus those other processes start in that
second.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import Budget, ModelConfig
from specstress.llm.errors import BudgetExhausted, LLMDeferred, LLMError
from specstress.llm.traffic import store as db

__all__ = [
    "DAILY_QUOTA_PAUSE_SECONDS",
    "REFRESH_SECONDS",
    "Admission",
    "provider_key",
    "provider_label",
]

REFRESH_SECONDS = 1.0
DAILY_QUOTA_PAUSE_SECONDS = 3600.0
_DAILY = re.compile(r"daily|per[ _-]?day", re.IGNORECASE)


def provider_key(model: ModelConfig) -> str:
    """The identity of a provider account: where the calls go and which key pays."""
    return _provider_key(model.base_url.rstrip("/"), model.api_key_env)


@functools.lru_cache(maxsize=1024)
def _provider_key(base_url: str, api_key_env: str | None) -> str:
    return hashlib.sha256(json.dumps([base_url, api_key_env]).encode()).hexdigest()


def provider_label(base_url: str) -> str:
    """Host and path of a base URL: enough to tell providers apart in metrics and the CLI."""
    parts = urlsplit(base_url)
    return f"{parts.netloc}{parts.path.rstrip('/')}" or base_url


@dataclass
class _Snapshot:
    pauses: dict[str, db.Pause] = field(default_factory=dict)
    cost_usd: float = 0.0
    tokens: int = 0
    taken_at: float = float("-inf")


class Admission:
    def __init__(self, engine: AsyncEngine, budget: Budget, defer_seconds: float) -> None:
        self._engine = engine
        self._budget = budget
        self._defer_seconds = defer_seconds
        self._snapshot = _Snapshot()
        self._refreshing = asyncio.Lock()
        self._paused_labels: set[tuple[str, str]] = set()

    async def check(self, model: ModelConfig) -> None:
        """Raise LLMDeferred when the model's provider is paused, BudgetExhausted when the
        budget is spent; return when a paid call may start."""
        snapshot = await self._current()
        pause = snapshot.pauses.get(provider_key(model))
        if pause is not None:
            delay = self._defer_seconds
            if pause.paused_until is not None:
                left = (pause.paused_until - datetime.now(UTC)).total_seconds()
                delay = min(delay, left)
            if delay > 0:
                metrics.llm_deferred.labels(model.key, "provider_paused").inc()
                raise LLMDeferred(
                    "terminal_quota",
                    f"{model.key}: provider {provider_label(pause.base_url)} is paused since "
                    f"{pause.paused_at:%Y-%m-%d %H:%M:%S} UTC: {pause.reason}",
                    delay=delay,
                    cause="provider_paused",
                )
        spent = self._budget.spent_by(snapshot.cost_usd, snapshot.tokens)
        metrics.budget_exhausted.set(1 if spent else 0)
        for kind, used, cap in (
            ("cost", snapshot.cost_usd, self._budget.max_cost_usd),
            ("tokens", snapshot.tokens, self._budget.max_tokens),
        ):
            if cap:
                metrics.budget_used_ratio.labels(kind).set(used / cap)
        if spent:
            metrics.llm_deferred.labels(model.key, "budget").inc()
            raise BudgetExhausted(self._defer_seconds, spent)

    async def pause(self, model: ModelConfig, error: LLMError) -> LLMDeferred:
        """Pause the model's provider for the whole fleet; returns the error to raise."""
        message = str(error)
        if error.retry_after is not None:
            seconds: float | None = error.retry_after
        elif _DAILY.search(message):
            seconds = DAILY_QUOTA_PAUSE_SECONDS
        else:
            seconds = None
        key = provider_key(model)
        await db.pause_provider(
            self._engine,
            provider_key=key,
            base_url=model.base_url.rstrip("/"),
            api_key_env=model.api_key_env,
            model_key=model.key,
            reason=message,
            pause_seconds=seconds,
        )
        self._snapshot.taken_at = float("-inf")  # read it back with the database's times
        # show the pause now: every in-flight call of this provider may fail before a re-read
        label = (provider_label(model.base_url), model.api_key_env or "")
        metrics.provider_paused.labels(*label).set(1)
        self._paused_labels.add(label)
        metrics.llm_deferred.labels(model.key, "provider_paused").inc()
        until = "until cleared" if seconds is None else f"for {seconds:.0f} s"
        return LLMDeferred(
            "terminal_quota",
            f"{message} (provider {provider_label(model.base_url)} paused {until})",
            delay=self._defer_seconds if seconds is None else min(seconds, self._defer_seconds),
            cause="provider_paused",
            http_status=error.http_status,
        )

    def paid(self, cost_usd: float, tokens: int) -> None:
        """Count this process's own spend until the next snapshot includes it."""
        self._snapshot.cost_usd += cost_usd
        self._snapshot.tokens += tokens

    async def _current(self) -> _Snapshot:
        if time.monotonic() - self._snapshot.taken_at < REFRESH_SECONDS:
            return self._snapshot
        async with self._refreshing:
            if time.monotonic() - self._snapshot.taken_at < REFRESH_SECONDS:
                return self._snapshot
            active = await db.pauses(self._engine, active_only=True)
            fresh = _Snapshot(pauses={p.provider_key: p for p in active})
            if self._budget.capped:
                fresh.cost_usd, fresh.tokens = await db.spent(self._engine)
            fresh.taken_at = time.monotonic()
            self._snapshot = fresh
            self._show_pauses(active)
        return self._snapshot

    def _show_pauses(self, active: list[db.Pause]) -> None:
        labels = {(provider_label(p.base_url), p.api_key_env or "") for p in active}
        for label in self._paused_labels - labels:
            metrics.provider_paused.labels(*label).set(0)
        for label in labels:
            metrics.provider_paused.labels(*label).set(1)
        self._paused_labels |= labels
