"""The watcher's work: list each watched account's models, apply the rules, register within
budget, retire what is gone, and report on each release once its backfill is complete.

One process of the fleet does it at a time: the one that holds the watch advisory lock on a
connection of its own (`Leadership`); if it dies, its connection closes, the lock is freed and
another replica takes over at its next try.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from specstress import metrics
from specstress.config import Config, ModelConfig, WatchProvider, WatchRule
from specstress.contracts import Event, ModelRegistered, ModelsCompared
from specstress.errors import InputError, RetryLater
from specstress.llm import Gateway, LLMError
from specstress.llm.protocol import ListedModel
from specstress.watch import store
from specstress.watch.compare import build_comparison
from specstress.watch.complete import backfill_complete
from specstress.watch.estimate import Estimate, estimate_backfill
from specstress.watch.facts import load_facts
from specstress.watch.rules import configured_key, entry_for, model_key_for, pick_rule

__all__ = [
    "STATUSES",
    "WATCH_LOCK",
    "Leadership",
    "Publish",
    "Watcher",
    "next_wait",
    "register_discovered",
]

log = logging.getLogger("specstress.watch")
# pg advisory lock key of the one poller ("spstwatc")
WATCH_LOCK = 0x7370_7374_7761_7463
STATUSES = ("proposed", "registered", "ignored", "retired")

Publish = Callable[[Event], Awaitable[object]]


class Leadership:
    """The fleet-wide watch lock, held on a connection kept for it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def held(self) -> bool:
        """Whether this process holds the lock now (taking it when it is free)."""
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                return True
            except DBAPIError:
                # the connection, and with it the lock, is gone
                lost, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    await lost.close()
        conn = await self._engine.connect()
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": WATCH_LOCK})
        except BaseException:
            await conn.close()
            raise
        if got:
            self._conn = conn
            return True
        await conn.close()
        return False

    async def release(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": WATCH_LOCK})
            finally:
                await self._conn.close()
                self._conn = None


def next_wait(poll_seconds: float, jitter: float, rng: random.Random) -> float:
    """Seconds to the next listing: the period spread by up to +-jitter of itself, so replicas
    and restarts do not list in step."""
    return poll_seconds * (1 + rng.uniform(-jitter, jitter))


def _rule(provider: WatchProvider, name: str | None) -> WatchRule | None:
    return next((r for r in provider.rules if r.name == name), None)


def _created(listed: ListedModel) -> datetime | None:
    return None if listed.created is None else datetime.fromtimestamp(listed.created, UTC)


async def register_discovered(
    engine: AsyncEngine,
    publish: Publish,
    row: store.Discovered,
    *,
    note: str,
    estimate: Estimate | None,
) -> bool:
    """Register a proposed discovered model and ask for its backfill; False when it was not
    proposed (already registered by another process, ignored or retired)."""
    if row.entry is None or row.model_key is None or row.family is None:
        raise InputError(f"{row.provider}/{row.model_id} has no model entry (no rule matched)")
    stamp = await store.register(
        engine,
        row.provider,
        row.model_id,
        model_key=row.model_key,
        family=row.family,
        entry=row.entry,
        note=note,
        estimate_usd=None if estimate is None else estimate.total_usd,
        estimate=None if estimate is None else estimate.model_dump(mode="json"),
    )
    if stamp is None:
        return False
    await publish(
        ModelRegistered(model_key=row.model_key, registered_at=stamp.isoformat(timespec="seconds"))
    )
    return True


class Watcher:
    def __init__(
        self, config: Config, engine: AsyncEngine, gateway: Gateway, publish: Publish
    ) -> None:
        self.config = config
        self.engine = engine
        self.gateway = gateway
        self.publish = publish

    async def poll(self) -> None:
        """List every watched account once; a failed listing changes nothing of its models."""
        for provider in self.config.watch.providers:
            try:
                listed = await self.gateway.list_models(provider)
            except (LLMError, RetryLater, InputError) as exc:
                outcome = exc.error_class if isinstance(exc, LLMError) else type(exc).__name__
                metrics.watch_polls.labels(provider.key, outcome).inc()
                log.warning("model list of %s failed (%s): %s", provider.key, outcome, exc)
                continue
            metrics.watch_polls.labels(provider.key, "ok").inc()
            await self.apply_listing(provider, listed)
        await self.refresh_gauges()

    async def apply_listing(self, provider: WatchProvider, listed: list[ListedModel]) -> None:
        known = {d.model_id: d for d in await store.discovered(self.engine, provider=provider.key)}
        live = {m.model_id: m for m in listed if not m.deprecated}
        deprecated = {m.model_id for m in listed if m.deprecated}
        for model_id, model in live.items():
            row = known.get(model_id)
            if row is None:
                await self._first_sight(provider, model)
                continue
            await store.seen(
                self.engine, provider.key, model_id, model.display_name, _created(model)
            )
            if row.status == "retired":
                status = await store.revive(self.engine, provider.key, model_id)
                log.info("%s/%s is listed again: %s", provider.key, model_id, status)
        for row in await store.discovered(self.engine, provider=provider.key):
            rule = _rule(provider, row.rule)
            if row.status == "proposed" and rule is not None and rule.action == "register":
                await self._try_register(provider, rule, row)
        for model_id, row in known.items():
            if model_id in live or row.status == "retired":
                continue
            why = "deprecated by its provider" if model_id in deprecated else "no longer listed"
            retired = await store.retire(self.engine, provider.key, model_id, why)
            log.info("%s/%s retired (%s); target %s", provider.key, model_id, why, retired)

    async def _first_sight(self, provider: WatchProvider, model: ListedModel) -> None:
        row = {
            "provider": provider.key,
            "model_id": model.model_id,
            "display_name": model.display_name,
            "provider_created_at": _created(model),
        }
        known_key = configured_key(self.config, provider, model.model_id)
        if known_key is not None:
            target = await store.active_target(self.engine, known_key)
            await store.record(
                self.engine,
                {
                    **row,
                    "model_key": known_key,
                    "family": self.config.model(known_key).family,
                    "status": "registered" if target else "ignored",
                    "registered_at": store.now() if target else None,
                    "note": f"defined in the config file as {known_key}",
                },
            )
            return
        rule = pick_rule(provider, model.model_id)
        if rule is None:
            await store.record(self.engine, {**row, "status": "ignored", "note": "no rule matches"})
            return
        try:
            key = model_key_for(rule, model.model_id)
            entry = entry_for(self.config, provider, rule, model.model_id)
        except (InputError, ValidationError) as exc:
            await store.record(
                self.engine,
                {**row, "rule": rule.name, "status": "ignored", "note": f"no entry: {exc}"[:500]},
            )
            return
        taken = key in {m.key for m in self.config.models} or await store.key_taken(
            self.engine, key, provider.key, model.model_id
        )
        await store.record(
            self.engine,
            {
                **row,
                "rule": rule.name,
                "family": rule.family,
                "model_key": key,
                "entry": entry.model_dump(mode="json"),
                "status": "ignored" if taken else "proposed",
                "note": f"key {key} names another model already" if taken else "",
            },
        )
        log.info("discovered %s/%s (rule %s) as %s", provider.key, model.model_id, rule.name, key)

    async def _try_register(
        self, provider: WatchProvider, rule: WatchRule, row: store.Discovered
    ) -> None:
        assert row.entry is not None
        model = ModelConfig.model_validate(row.entry)
        estimate = await estimate_backfill(self.engine, self.config, model)
        dumped = estimate.model_dump(mode="json")
        if estimate.total_usd > rule.backfill_budget_usd:
            metrics.watch_held.labels(provider.key, "budget").inc()
            await store.hold(
                self.engine,
                provider.key,
                row.model_id,
                note=f"over budget: backfill estimate ${estimate.total_usd:.4f} > "
                f"${rule.backfill_budget_usd:.4f} (rule {rule.name})",
                estimate_usd=estimate.total_usd,
                estimate=dumped,
            )
            return
        if await store.registered_today(self.engine, provider.key, rule.name) >= (
            rule.max_new_per_day
        ):
            metrics.watch_held.labels(provider.key, "daily_limit").inc()
            await store.hold(
                self.engine,
                provider.key,
                row.model_id,
                note=f"rule {rule.name} registered its {rule.max_new_per_day} models of the day",
                estimate_usd=estimate.total_usd,
                estimate=dumped,
            )
            return
        if await register_discovered(
            self.engine,
            self.publish,
            row,
            note=f"registered by rule {rule.name}",
            estimate=estimate,
        ):
            metrics.watch_registrations.labels(provider.key, rule.name).inc()
            log.info("registered %s (%s)", row.model_key, estimate.describe())

    async def check_backfills(self) -> None:
        """Report on every registered discovered model whose backfill has just completed."""
        waiting = await store.awaiting_report(self.engine)
        if not waiting:
            return
        facts = await load_facts(self.engine)
        total = len(facts.scenarios)
        for row in waiting:
            assert row.model_key is not None
            answered = sum(1 for p in facts.positions.values() if row.model_key in p)
            metrics.watch_backfill_progress.labels(row.model_key).set(
                answered / total if total else 0.0
            )
            if row.model_key not in facts.families:
                continue
            if not await backfill_complete(self.engine, self.config, row.model_key, facts):
                continue
            provider = next((p for p in self.config.watch.providers if p.key == row.provider), None)
            rule = None if provider is None else _rule(provider, row.rule)
            comparison = build_comparison(
                self.config, facts, row.model_key, None if rule is None else rule.predecessor
            )
            stamp = await store.store_comparison(
                self.engine,
                provider=row.provider,
                model_id=row.model_id,
                model_key=row.model_key,
                against=comparison.against or "",
                family=comparison.family,
                body=comparison.model_dump(mode="json"),
                flag_rate_shift=comparison.flag_rate_shift,
            )
            shift = comparison.flag_rate_shift
            if shift is not None:
                labels = (row.model_key, comparison.family)
                metrics.release_flag_rate_shift.labels(*labels).set(shift)
                metrics.release_flag_rate_shifted.labels(*labels).set(
                    float(abs(shift) > self.config.watch.flag_rate_shift_alert)
                )
            await self.publish(
                ModelsCompared(
                    model_key=row.model_key,
                    against=comparison.against or "",
                    family=comparison.family,
                    computed_at=stamp.isoformat(),
                )
            )
            log.info("release report of %s stored (against %s)", row.model_key, comparison.against)

    async def refresh_gauges(self) -> None:
        counts = await store.status_counts(self.engine)
        for provider in self.config.watch.providers:
            for status in STATUSES:
                metrics.watch_discovered.labels(provider.key, status).set(
                    counts.get((provider.key, status), 0)
                )
