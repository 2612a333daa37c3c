"""The LLM call ledger: one `llm_calls` row per HTTP attempt; its `ok` rows are the answer cache.

At most one `ok` row exists per request hash (a partial unique index), so an answer, once paid
for, is found again by every later identical call instead of being bought twice.

Each paid row also adds its cost and tokens to `llm_spend` in the same transaction, so the
running total the budget is checked against is exactly the sum over the ledger's paid rows.

A process's `Ledger` looks up and writes the rows of concurrent calls together: one query over
an array of hashes, one multi-row insert with one spend update (`specstress.db.batching`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import any_, bindparam, func, null, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import ReturningInsert

from specstress.db.batching import Coalescer
from specstress.db.engine import database_unreachable, reading
from specstress.db.schema import llm_calls
from specstress.ids import advisory_lock_key
from specstress.llm.traffic.store import add_spend
from specstress.text import storable

__all__ = [
    "MAX_ERROR_CHARS",
    "AttemptRecord",
    "CallLocks",
    "Ledger",
    "find_completed",
    "record_attempt",
    "record_attempts",
]

MAX_ERROR_CHARS = 2000
# lock connections kept open between calls; more are opened (and closed after) under load
_LOCK_POOL_SIZE = 32


@dataclass(frozen=True)
class AttemptRecord:
    request_hash: str
    stage: str
    model_key: str
    attempt: int
    status: Literal["ok", "error"]
    latency_seconds: float
    error_class: str | None = None
    error: str | None = None
    http_status: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    response: dict[str, Any] | None = None


async def find_completed(engine: AsyncEngine, request_hash: str) -> dict[str, Any] | None:
    """The stored answer (`response` JSON) of the completed call with this hash, if any."""
    query = select(llm_calls.c.response).where(
        llm_calls.c.request_hash == request_hash, llm_calls.c.status == "ok"
    )
    async with reading(engine) as conn:
        response: dict[str, Any] | None = await conn.scalar(query)
    return response


def _row(record: AttemptRecord) -> dict[str, Any]:
    return {
        "request_hash": record.request_hash,
        "stage": record.stage,
        "model_key": record.model_key,
        "attempt": record.attempt,
        "status": record.status,
        "error_class": record.error_class,
        "error": None if record.error is None else storable(record.error[:MAX_ERROR_CHARS]),
        "http_status": record.http_status,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_tokens": record.cached_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost_usd": record.cost_usd,
        "latency_seconds": record.latency_seconds,
        # a bare None would be stored as JSON null; an error row has no response at all
        "response": null() if record.response is None else record.response,
    }


def _insert_keeping_answers(rows: list[dict[str, Any]]) -> ReturningInsert[tuple[str, str]]:
    """INSERT of ledger rows that leaves a hash's completed row alone (RETURNING the new)."""
    return (
        insert(llm_calls)
        .values(rows)
        .on_conflict_do_nothing(
            # A literal predicate: Postgres cannot match a partial index to a bound parameter
            # once asyncpg's prepared statement switches to a generic plan (6th execution).
            index_elements=[llm_calls.c.request_hash],
            index_where=text("status = 'ok'"),
        )
        .returning(llm_calls.c.request_hash, llm_calls.c.status)
    )


async def _append(conn: AsyncConnection, records: Sequence[AttemptRecord]) -> list[bool]:
    """Append attempts in the caller's transaction and add the new answers' cost and tokens to
    the spend; for each record, False when it is an `ok` row whose hash already had one (here
    or earlier in `records`)."""
    added = await conn.execute(_insert_keeping_answers([_row(r) for r in records]))
    new_answers = {row.request_hash for row in added if row.status == "ok"}
    written = []
    for record in records:
        new = record.status != "ok" or record.request_hash in new_answers
        if record.status == "ok":
            # of two records of one hash, the row kept is the first's
            new_answers.discard(record.request_hash)
        written.append(new)
    paid = [r for r, new in zip(records, written, strict=True) if new and r.status == "ok"]
    if paid:
        # the budget's running total moves with the ledger rows, in one transaction
        await add_spend(
            conn,
            int(paid[0].request_hash[:8], 16),
            sum(r.cost_usd for r in paid),
            sum(r.input_tokens + r.output_tokens for r in paid),
        )
    return written


async def record_attempt(engine: AsyncEngine, record: AttemptRecord) -> bool:
    """Append one attempt. False when it is an `ok` row and the hash already had one."""
    async with engine.begin() as conn:
        return (await _append(conn, [record]))[0]


async def record_attempts(conn: AsyncConnection, records: Sequence[AttemptRecord]) -> set[str]:
    """Append many attempts in the caller's transaction (batch results come by the thousand);
    returns the hashes whose `ok` row is new, and adds their cost and tokens to the spend."""
    if not records:
        return set()
    written = await _append(conn, records)
    return {
        r.request_hash for r, new in zip(records, written, strict=True) if new and r.status == "ok"
    }


_FIND_COMPLETED_MANY = select(llm_calls.c.request_hash, llm_calls.c.response).where(
    llm_calls.c.request_hash
    == any_(bindparam("hashes", type_=ARRAY(llm_calls.c.request_hash.type))),
    llm_calls.c.status == "ok",
)


class Ledger:
    """The ledger as one process's concurrent calls use it: their lookups run as one query
    and their rows are written in one transaction, batch by batch."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._lookups = Coalescer(self._find_many, name="ledger lookups")
        self._writes = Coalescer(self._append_many, name="ledger writes")

    async def find_completed(self, request_hash: str) -> dict[str, Any] | None:
        """As `find_completed`."""
        return await self._lookups.submit(request_hash)

    async def record(self, record: AttemptRecord) -> bool:
        """As `record_attempt`."""
        return await self._writes.submit(record)

    async def _find_many(self, hashes: Sequence[str]) -> list[dict[str, Any] | None]:
        async with reading(self._engine) as conn:
            rows = await conn.execute(_FIND_COMPLETED_MANY, {"hashes": list(set(hashes))})
            found: dict[str, dict[str, Any]] = {row.request_hash: row.response for row in rows}
        return [found.get(h) for h in hashes]

    async def _append_many(self, records: Sequence[AttemptRecord]) -> list[bool]:
        async with self._engine.begin() as conn:
            return await _append(conn, records)


class CallLocks:
    """Postgres session advisory locks keyed on request hashes, held across an LLM call.

    The locks live on connections of their own engine, not the service's: a call waiting for a
    lock holds its connection for as long as the other call takes, and must not starve the
    ledger writes (or hit the pool timeout). Overflow is unbounded because the gateway's
    per-model semaphores already bound how many locks a process holds.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = create_async_engine(engine.url, pool_size=_LOCK_POOL_SIZE, max_overflow=-1)

    @asynccontextmanager
    async def hold(self, request_hash: str) -> AsyncIterator[None]:
        key = advisory_lock_key(request_hash)
        async with self._engine.connect() as conn:
            # autocommit: a session lock needs no transaction, and none should idle for minutes
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            released = False
            try:
                await conn.execute(select(func.pg_advisory_lock(key)))
                try:
                    yield
                finally:
                    try:
                        await conn.execute(select(func.pg_advisory_unlock(key)))
                        released = True
                    except Exception as exc:
                        # a session that died took its lock with it; failing here would
                        # throw away the answer the block has just paid for
                        if not database_unreachable(exc):
                            raise
            finally:
                if not released:
                    # Interrupted while taking or releasing the lock (cancelled, connection
                    # lost): whether the session still holds it is unknown, so end the session
                    # rather than return it to the pool where it could block this hash forever.
                    await conn.invalidate()

    async def aclose(self) -> None:
        await self._engine.dispose()
