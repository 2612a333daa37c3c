"""The watcher's SQL: discovered models, registering and retiring targets, comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db import reading
from specstress.db.schema import discovered_models, model_comparisons, models

__all__ = [
    "Discovered",
    "active_target",
    "awaiting_report",
    "discovered",
    "hold",
    "key_taken",
    "now",
    "record",
    "register",
    "registered_today",
    "retire",
    "revive",
    "seen",
    "status_counts",
    "store_comparison",
    "stored_comparison",
]


@dataclass(frozen=True)
class Discovered:
    provider: str
    model_id: str
    model_key: str | None
    display_name: str | None
    provider_created_at: datetime | None
    rule: str | None
    family: str | None
    status: str
    entry: dict[str, Any] | None
    estimate_usd: float | None
    note: str
    first_seen: datetime
    last_seen: datetime
    registered_at: datetime | None
    retired_at: datetime | None
    backfill_completed_at: datetime | None


_COLUMNS = [discovered_models.c[name] for name in Discovered.__dataclass_fields__]


def _listing(provider: str, model_id: str) -> ColumnElement[bool]:
    """The row of one model a provider lists."""
    return and_(discovered_models.c.provider == provider, discovered_models.c.model_id == model_id)


def _update_listing(provider: str, model_id: str) -> Update:
    return update(discovered_models).where(_listing(provider, model_id))


async def discovered(
    engine: AsyncEngine, *, provider: str | None = None, model_key: str | None = None
) -> list[Discovered]:
    query = select(*_COLUMNS).order_by(discovered_models.c.provider, discovered_models.c.model_id)
    if provider is not None:
        query = query.where(discovered_models.c.provider == provider)
    if model_key is not None:
        query = query.where(discovered_models.c.model_key == model_key)
    async with reading(engine) as conn:
        return [Discovered(*row) for row in await conn.execute(query)]


async def record(engine: AsyncEngine, row: dict[str, Any]) -> None:
    """A newly listed model with its first status (kept if another process recorded it)."""
    async with engine.begin() as conn:
        await conn.execute(insert(discovered_models).values(**row).on_conflict_do_nothing())


async def seen(
    engine: AsyncEngine,
    provider: str,
    model_id: str,
    display_name: str | None,
    created_at: datetime | None,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            _update_listing(provider, model_id).values(
                last_seen=func.now(),
                display_name=func.coalesce(display_name, discovered_models.c.display_name),
                provider_created_at=func.coalesce(
                    created_at, discovered_models.c.provider_created_at
                ),
            )
        )


async def hold(
    engine: AsyncEngine,
    provider: str,
    model_id: str,
    *,
    note: str,
    estimate_usd: float | None = None,
    estimate: dict[str, Any] | None = None,
) -> None:
    """Keep a model proposed, saying why (and what its backfill would cost)."""
    async with engine.begin() as conn:
        await conn.execute(
            _update_listing(provider, model_id)
            .where(discovered_models.c.status == "proposed")
            .values(note=note, estimate_usd=estimate_usd, estimate=estimate)
        )


async def registered_today(engine: AsyncEngine, provider: str, rule: str) -> int:
    async with reading(engine) as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(discovered_models)
            .where(discovered_models.c.provider == provider)
            .where(discovered_models.c.rule == rule)
            .where(discovered_models.c.registered_at > func.now() - text("interval '1 day'"))
        )
    return int(count or 0)


async def register(
    engine: AsyncEngine,
    provider: str,
    model_id: str,
    *,
    model_key: str,
    family: str,
    entry: dict[str, Any],
    note: str,
    estimate_usd: float | None,
    estimate: dict[str, Any] | None,
) -> datetime | None:
    """Make a proposed model a target, in one transaction with its entry in `models`; returns
    its registration time, or None when it was not proposed (another process registered it
    first, or it is ignored or retired)."""
    async with engine.begin() as conn:
        stamp = (
            await conn.execute(
                _update_listing(provider, model_id)
                .where(discovered_models.c.status == "proposed")
                .values(
                    status="registered",
                    registered_at=func.now(),
                    note=note,
                    estimate_usd=estimate_usd,
                    estimate=estimate,
                )
                .returning(discovered_models.c.registered_at)
            )
        ).scalar()
        if stamp is None:
            return None
        await conn.execute(
            insert(models)
            .values(model_key=model_key, family=family, active=True, entry=entry)
            .on_conflict_do_update(
                index_elements=[models.c.model_key],
                set_={"active": True, "family": family, "entry": entry, "retired_at": None},
            )
        )
    result: datetime = stamp
    return result


async def retire(engine: AsyncEngine, provider: str, model_id: str, why: str) -> str | None:
    """Mark a model no longer listed as retired and stop calls to its target; returns the
    target key it deactivated, if any."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                _update_listing(provider, model_id)
                .where(discovered_models.c.status != "retired")
                .values(status="retired", retired_at=func.now(), note=why)
                .returning(discovered_models.c.model_key, discovered_models.c.registered_at)
            )
        ).first()
        if row is None or row.model_key is None or row.registered_at is None:
            return None
        await conn.execute(
            update(models)
            .where(models.c.model_key == row.model_key)
            .values(active=False, retired_at=func.now())
        )
    key: str = row.model_key
    return key


async def revive(engine: AsyncEngine, provider: str, model_id: str) -> str | None:
    """A retired model listed again: back to what it was (a registered target takes calls
    again); returns its status now."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(
                    discovered_models.c.model_key,
                    discovered_models.c.registered_at,
                    discovered_models.c.rule,
                )
                .where(_listing(provider, model_id))
                .where(discovered_models.c.status == "retired")
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        status = (
            "registered"
            if row.registered_at is not None
            else ("proposed" if row.rule is not None else "ignored")
        )
        await conn.execute(
            _update_listing(provider, model_id).values(
                status=status, retired_at=None, note="listed again"
            )
        )
        if status == "registered":
            await conn.execute(
                update(models)
                .where(models.c.model_key == row.model_key)
                .values(active=True, retired_at=None)
            )
    return status


async def active_target(engine: AsyncEngine, model_key: str) -> bool:
    async with reading(engine) as conn:
        active = await conn.scalar(select(models.c.active).where(models.c.model_key == model_key))
    return bool(active)


async def key_taken(engine: AsyncEngine, model_key: str, provider: str, model_id: str) -> bool:
    """Whether a target key is registered already, or wanted by another listed model (say, the
    same id at a second account): a key names one endpoint."""
    others = (
        select(discovered_models.c.model_key)
        .where(discovered_models.c.model_key == model_key)
        .where(
            (discovered_models.c.provider != provider) | (discovered_models.c.model_id != model_id)
        )
        .where(discovered_models.c.status.in_(("proposed", "registered")))
    )
    async with reading(engine) as conn:
        registered = await conn.scalar(
            select(models.c.model_key).where(models.c.model_key == model_key)
        )
        other = await conn.scalar(others.limit(1))
    return registered is not None or other is not None


async def awaiting_report(engine: AsyncEngine) -> list[Discovered]:
    """Registered discovered models whose backfill has not been seen complete yet."""
    query = (
        select(*_COLUMNS)
        .where(discovered_models.c.status == "registered")
        .where(discovered_models.c.rule.is_not(None) | discovered_models.c.entry.is_not(None))
        .where(discovered_models.c.backfill_completed_at.is_(None))
        .order_by(discovered_models.c.registered_at)
    )
    async with reading(engine) as conn:
        return [Discovered(*row) for row in await conn.execute(query)]


async def store_comparison(
    engine: AsyncEngine,
    *,
    provider: str,
    model_id: str,
    model_key: str,
    against: str,
    family: str,
    body: dict[str, Any],
    flag_rate_shift: float | None,
) -> datetime:
    """Store (or replace) a comparison and mark the model's backfill complete."""
    async with engine.begin() as conn:
        stamp: datetime = (
            await conn.execute(
                insert(model_comparisons)
                .values(
                    model_key=model_key,
                    against=against,
                    family=family,
                    body=body,
                    flag_rate_shift=flag_rate_shift,
                )
                .on_conflict_do_update(
                    index_elements=[model_comparisons.c.model_key, model_comparisons.c.against],
                    set_={
                        "family": family,
                        "body": body,
                        "flag_rate_shift": flag_rate_shift,
                        "computed_at": func.now(),
                    },
                )
                .returning(model_comparisons.c.computed_at)
            )
        ).scalar_one()
        await conn.execute(_update_listing(provider, model_id).values(backfill_completed_at=stamp))
    return stamp


async def stored_comparison(
    engine: AsyncEngine, model_key: str, against: str | None = None
) -> dict[str, Any] | None:
    query = select(model_comparisons.c.body).where(model_comparisons.c.model_key == model_key)
    if against is not None:
        query = query.where(model_comparisons.c.against == against)
    async with reading(engine) as conn:
        body = (await conn.execute(query.order_by(model_comparisons.c.computed_at.desc()))).scalar()
    return None if body is None else dict(body)


async def status_counts(engine: AsyncEngine) -> dict[tuple[str, str], int]:
    """(provider, status) -> number of discovered models, for the gauges."""
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(discovered_models.c.provider, discovered_models.c.status, func.count()).group_by(
                discovered_models.c.provider, discovered_models.c.status
            )
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}


def now() -> datetime:
    return datetime.now(UTC)
