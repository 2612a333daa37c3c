"""SQL of LLM traffic control: fleet-wide rate-limit state, provider pauses and running spend.

The pacing itself is explained in `specstress.llm.traffic.limits`; here each step is one statement, so
a reservation costs one round trip and holds its row lock only for that statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from specstress.db.schema import llm_provider_pauses, llm_rate_limits, llm_spend

__all__ = [
    "SPEND_SHARDS",
    "Pause",
    "Reservation",
    "Settlement",
    "clear_pauses",
    "ensure_limit",
    "limit_rows",
    "pacing_engine",
    "pause_provider",
    "pauses",
    "reserve",
    "settle",
    "spent",
]

# rows of `llm_spend`, summed by `spent`; a ledger write adds to one (`specstress.llm.ledger`)
SPEND_SHARDS = 16
_PACING_POOL_SIZE = 8

# Lock the row first (the CTE), so the plan is computed from its newest version whatever ran
# concurrently, then move the buckets' theoretical arrival times past this call when it is
# admitted. NULL limits mean "no such limit": least() and coalesce() skip them.
_RESERVE = text(
    """
WITH current AS MATERIALIZED (
    SELECT limit_key, request_tat, token_tat, blocked_until, rate_factor,
           learned_requests_per_minute, learned_tokens_per_minute,
           CAST(extract(epoch FROM now()) AS float8) AS now,
           least(CAST(:rpm AS float8), learned_requests_per_minute) AS rpm,
           least(CAST(:tpm AS float8), learned_tokens_per_minute) AS tpm
    FROM llm_rate_limits
    WHERE limit_key = :limit_key
    FOR UPDATE
), paced AS (
    SELECT *,
           60.0 / (rpm * rate_factor) AS request_interval,
           60.0 / (tpm * rate_factor) AS token_interval
    FROM current
), planned AS (
    -- a call starts once each bucket's backlog is within the burst; its tokens are added
    -- after, so a call bigger than the burst is not starved by smaller ones
    SELECT *,
           greatest(
               now,
               blocked_until,
               coalesce(request_tat + request_interval
                        - greatest(request_interval, CAST(:burst AS float8)), now),
               CASE WHEN token_interval IS NOT NULL
                    THEN token_tat - CAST(:burst AS float8) END
           ) AS start_at
    FROM paced
), decided AS (
    SELECT *,
           start_at - now AS wait,
           start_at - now <= CAST(:max_wait AS float8) AS admitted
    FROM planned
)
UPDATE llm_rate_limits AS l SET
    request_tat = CASE WHEN d.admitted AND d.request_interval IS NOT NULL
                       THEN greatest(d.request_tat, d.start_at) + d.request_interval
                       ELSE l.request_tat END,
    token_tat = CASE WHEN d.admitted AND d.token_interval IS NOT NULL
                     THEN greatest(d.token_tat, d.start_at)
                          + CAST(:tokens AS float8) * d.token_interval
                     ELSE l.token_tat END,
    updated_at = now()
FROM decided AS d
WHERE l.limit_key = d.limit_key
RETURNING d.wait, d.admitted, d.rate_factor, d.request_interval, d.token_interval,
          d.learned_requests_per_minute, d.learned_tokens_per_minute
"""
)

# Everything a finished attempt teaches, in one statement. SET expressions read the row as it
# was before this statement, so the decrease test and its timestamp agree.
_SETTLE = text(
    """
UPDATE llm_rate_limits SET
    token_tat = greatest(
        token_tat + CAST(:token_correction AS float8)
                    * coalesce(60.0 / (least(CAST(:tpm AS float8), learned_tokens_per_minute)
                                       * rate_factor), 0),
        extract(epoch FROM now()) + CAST(:token_floor AS float8)),
    request_tat = greatest(request_tat, extract(epoch FROM now()) + CAST(:request_floor AS float8)),
    blocked_until = greatest(blocked_until,
                             extract(epoch FROM now()) + CAST(:block_seconds AS float8)),
    rate_factor = CASE
        WHEN :throttled AND throttled_at <= extract(epoch FROM now()) - CAST(:cooldown AS float8)
            THEN greatest(CAST(:min_factor AS float8), rate_factor * CAST(:decrease AS float8))
        WHEN :succeeded THEN least(1.0, rate_factor + CAST(:increase AS float8))
        ELSE rate_factor END,
    throttled_at = CASE
        WHEN :throttled AND throttled_at <= extract(epoch FROM now()) - CAST(:cooldown AS float8)
            THEN extract(epoch FROM now())
        ELSE throttled_at END,
    learned_requests_per_minute = coalesce(CAST(:learned_rpm AS integer),
                                           learned_requests_per_minute),
    learned_tokens_per_minute = coalesce(CAST(:learned_tpm AS integer), learned_tokens_per_minute),
    updated_at = now()
WHERE limit_key = :limit_key
RETURNING rate_factor
"""
)


def pacing_engine(engine: AsyncEngine) -> AsyncEngine:
    """Connections of their own for `reserve` and `settle`, which run on every call: in
    autocommit, so a statement is one round trip, and with commits that do not wait for the WAL
    flush (a crash can lose a moment of pacing state, never data). No ping on checkout: a
    dropped connection fails one call, which is retried, and is replaced.

    The pool is small and never overflows: callers beyond it queue in the process, not on the
    row's lock in Postgres, where many waiting backends collapse a hot row's throughput
    (measured in bench/ratelimit.py)."""
    return create_async_engine(
        engine.url,
        pool_size=_PACING_POOL_SIZE,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": {"synchronous_commit": "off"}},
    )


@dataclass(frozen=True)
class Reservation:
    """The database's answer to "may this call start, and when?"."""

    wait_seconds: float
    admitted: bool
    rate_factor: float
    # seconds between calls and per token at the current rate; None without such a limit
    request_interval: float | None
    token_interval: float | None
    learned_requests_per_minute: int | None
    learned_tokens_per_minute: int | None


@dataclass(frozen=True)
class Settlement:
    """What one finished attempt changes. None / 0 leaves a part alone."""

    tokens_per_minute: int | None = None
    token_correction: float = 0.0
    token_floor: float | None = None
    request_floor: float | None = None
    block_seconds: float | None = None
    throttled: bool = False
    succeeded: bool = False
    cooldown_seconds: float = 0.0
    min_factor: float = 1.0
    decrease: float = 1.0
    increase: float = 0.0
    learned_requests_per_minute: int | None = None
    learned_tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Pause:
    """A row of `llm_provider_pauses`: the fields are its columns."""

    provider_key: str
    base_url: str
    api_key_env: str | None
    model_key: str
    reason: str
    paused_at: datetime
    paused_until: datetime | None


async def ensure_limit(
    engine: AsyncEngine, limit_key: str, base_url: str, model_id: str, api_key_env: str | None
) -> None:
    statement = (
        insert(llm_rate_limits)
        .values(limit_key=limit_key, base_url=base_url, model_id=model_id, api_key_env=api_key_env)
        .on_conflict_do_nothing(index_elements=[llm_rate_limits.c.limit_key])
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def reserve(
    engine: AsyncEngine,
    limit_key: str,
    *,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    tokens: int,
    burst_seconds: float,
    max_wait_seconds: float,
) -> Reservation:
    params = {
        "limit_key": limit_key,
        "rpm": requests_per_minute,
        "tpm": tokens_per_minute,
        "tokens": tokens,
        "burst": burst_seconds,
        "max_wait": max_wait_seconds,
    }
    async with engine.begin() as conn:
        row = (await conn.execute(_RESERVE, params)).one()
    return Reservation(
        wait_seconds=max(0.0, float(row.wait)),
        admitted=bool(row.admitted),
        rate_factor=float(row.rate_factor),
        request_interval=None if row.request_interval is None else float(row.request_interval),
        token_interval=None if row.token_interval is None else float(row.token_interval),
        learned_requests_per_minute=row.learned_requests_per_minute,
        learned_tokens_per_minute=row.learned_tokens_per_minute,
    )


async def settle(engine: AsyncEngine, limit_key: str, settlement: Settlement) -> float:
    """Apply a finished attempt's lessons; returns the new rate factor."""
    params: dict[str, Any] = {
        "limit_key": limit_key,
        "tpm": settlement.tokens_per_minute,
        "token_correction": settlement.token_correction,
        "token_floor": settlement.token_floor,
        "request_floor": settlement.request_floor,
        "block_seconds": settlement.block_seconds,
        "throttled": settlement.throttled,
        "succeeded": settlement.succeeded,
        "cooldown": settlement.cooldown_seconds,
        "min_factor": settlement.min_factor,
        "decrease": settlement.decrease,
        "increase": settlement.increase,
        "learned_rpm": settlement.learned_requests_per_minute,
        "learned_tpm": settlement.learned_tokens_per_minute,
    }
    async with engine.begin() as conn:
        factor = await conn.scalar(_SETTLE, params)
    return 1.0 if factor is None else float(factor)


async def limit_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every paced endpoint with its state, the waits expressed relative to now."""
    now = func.extract("epoch", func.now())
    query = select(
        llm_rate_limits.c.base_url,
        llm_rate_limits.c.model_id,
        llm_rate_limits.c.api_key_env,
        llm_rate_limits.c.rate_factor,
        llm_rate_limits.c.learned_requests_per_minute,
        llm_rate_limits.c.learned_tokens_per_minute,
        func.greatest(0, llm_rate_limits.c.blocked_until - now).label("blocked_seconds"),
        llm_rate_limits.c.updated_at,
    ).order_by(llm_rate_limits.c.base_url, llm_rate_limits.c.model_id)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def pause_provider(
    engine: AsyncEngine,
    *,
    provider_key: str,
    base_url: str,
    api_key_env: str | None,
    model_key: str,
    reason: str,
    pause_seconds: float | None,
) -> None:
    """Pause a provider account for `pause_seconds`, or until cleared when None. A later
    report replaces the reason and the end, so the pause always shows the newest news."""
    until = None if pause_seconds is None else func.now() + timedelta(seconds=pause_seconds)
    values = {
        "provider_key": provider_key,
        "base_url": base_url,
        "api_key_env": api_key_env,
        "model_key": model_key,
        "reason": reason,
        "paused_until": until,
    }
    statement = insert(llm_provider_pauses).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[llm_provider_pauses.c.provider_key],
        set_={
            "model_key": statement.excluded.model_key,
            "reason": statement.excluded.reason,
            "paused_at": func.now(),
            "paused_until": statement.excluded.paused_until,
        },
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def pauses(engine: AsyncEngine, *, active_only: bool) -> list[Pause]:
    """Provider pauses; `active_only` leaves out those whose end has passed."""
    query = select(llm_provider_pauses).order_by(llm_provider_pauses.c.base_url)
    if active_only:
        query = query.where(
            (llm_provider_pauses.c.paused_until.is_(None))
            | (llm_provider_pauses.c.paused_until > func.now())
        )
    async with engine.connect() as conn:
        return [Pause(**r._mapping) for r in await conn.execute(query)]


async def clear_pauses(
    engine: AsyncEngine, *, base_url: str | None = None, api_key_env: str | None = None
) -> list[Pause]:
    """Lift pauses (all of them when `base_url` is None); returns what was lifted."""
    statement = delete(llm_provider_pauses)
    if base_url is not None:
        statement = statement.where(llm_provider_pauses.c.base_url == base_url)
    if api_key_env is not None:
        statement = statement.where(llm_provider_pauses.c.api_key_env == api_key_env)
    async with engine.begin() as conn:
        return [
            Pause(**r._mapping)
            for r in await conn.execute(statement.returning(llm_provider_pauses))
        ]


async def spent(engine: AsyncEngine) -> tuple[float, int]:
    """(US dollars, tokens) paid so far."""
    query = select(
        func.coalesce(func.sum(llm_spend.c.cost_usd), 0.0),
        func.coalesce(func.sum(llm_spend.c.tokens), 0),
    )
    async with engine.connect() as conn:
        cost, tokens = (await conn.execute(query)).one()
    return float(cost), int(tokens)
