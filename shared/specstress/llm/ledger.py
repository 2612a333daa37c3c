"""The LLM call ledger: one `llm_calls` row per HTTP attempt; its `ok` rows are the answer cache.

At most one `ok` row exists per request hash (a partial unique index), so an answer, once paid
for, is found again by every later identical call instead of being bought twice.

Each paid row also adds its cost and tokens to `llm_spend` in the same statement, so the
running total the budget is checked against is exactly the sum over the ledger's paid rows.

A process's `Ledger` looks up and writes the rows of concurrent calls together: one query over
an array of hashes, and one statement that inserts the rows and updates the spend
(`specstress.db.batching`), each on a connection of its own (`specstress.db.direct`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import any_, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from specstress.db.batching import Coalescer
from specstress.db.direct import DirectConnection, Statement
from specstress.db.engine import database_unreachable, reading
from specstress.db.schema import llm_calls
from specstress.ids import advisory_lock_key
from specstress.llm.traffic.store import SPEND_SHARDS
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


# Every attempt of a batch as one statement, whatever their number: the rows come in as one
# array per column, the paid ones that are new (RETURNING) feed the spend counter, and the
# whole is one statement, so it is atomic even in autocommit (one round trip, no BEGIN and
# COMMIT). An `ok` row whose hash already has one is left out by the partial unique index;
# the literal predicate matters: Postgres cannot match a partial index to a bound parameter
# once asyncpg's prepared statement switches to a generic plan (6th execution).
_APPEND = text(
    """
WITH attempts AS (
    SELECT * FROM unnest(
        CAST(:request_hash AS text[]), CAST(:stage AS text[]), CAST(:model_key AS text[]),
        CAST(:attempt AS integer[]), CAST(:status AS text[]), CAST(:error_class AS text[]),
        CAST(:error AS text[]), CAST(:http_status AS integer[]),
        CAST(:input_tokens AS integer[]), CAST(:output_tokens AS integer[]),
        CAST(:cached_tokens AS integer[]), CAST(:reasoning_tokens AS integer[]),
        CAST(:cost_usd AS float8[]), CAST(:latency_seconds AS float8[]),
        CAST(:response AS text[])
    ) WITH ORDINALITY AS a(request_hash, stage, model_key, attempt, status, error_class, error,
                           http_status, input_tokens, output_tokens, cached_tokens,
                           reasoning_tokens, cost_usd, latency_seconds, response, position)
), added AS (
    INSERT INTO llm_calls (request_hash, stage, model_key, attempt, status, error_class, error,
                           http_status, input_tokens, output_tokens, cached_tokens,
                           reasoning_tokens, cost_usd, latency_seconds, response)
    -- in the callers' order: of two `ok` rows of one hash, the first is kept
    SELECT request_hash, stage, model_key, attempt, status, error_class, error, http_status,
           input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd,
           latency_seconds, CAST(response AS jsonb)
    FROM attempts ORDER BY position
    ON CONFLICT (request_hash) WHERE status = 'ok' DO NOTHING
    RETURNING request_hash, status, cost_usd, input_tokens + output_tokens AS tokens
), spend AS (
    INSERT INTO llm_spend AS s (shard, cost_usd, tokens)
    SELECT CAST(:shard AS integer), sum(cost_usd), sum(tokens) FROM added WHERE status = 'ok'
    HAVING count(*) > 0
    ON CONFLICT (shard) DO UPDATE
    SET cost_usd = s.cost_usd + excluded.cost_usd, tokens = s.tokens + excluded.tokens
)
SELECT request_hash, status FROM added
"""
)


def _columns(records: Sequence[AttemptRecord]) -> dict[str, Any]:
    """The parameters of `_APPEND`: one list per column."""
    shard = next((int(r.request_hash[:8], 16) for r in records if r.status == "ok"), 0)
    return {
        "request_hash": [r.request_hash for r in records],
        "stage": [r.stage for r in records],
        "model_key": [r.model_key for r in records],
        "attempt": [r.attempt for r in records],
        "status": [r.status for r in records],
        "error_class": [r.error_class for r in records],
        "error": [
            None if r.error is None else storable(r.error[:MAX_ERROR_CHARS]) for r in records
        ],
        "http_status": [r.http_status for r in records],
        "input_tokens": [r.input_tokens for r in records],
        "output_tokens": [r.output_tokens for r in records],
        "cached_tokens": [r.cached_tokens for r in records],
        "reasoning_tokens": [r.reasoning_tokens for r in records],
        "cost_usd": [r.cost_usd for r in records],
        "latency_seconds": [r.latency_seconds for r in records],
        # an error row has no response at all (SQL NULL, not JSON null)
        "response": [None if r.response is None else json.dumps(r.response) for r in records],
        # which row of the sharded counter takes this batch's spend (any: they are summed)
        "shard": shard % SPEND_SHARDS,
    }


_APPEND_DIRECT = Statement(_APPEND)


def _written(records: Sequence[AttemptRecord], added: Iterable[tuple[str, str]]) -> list[bool]:
    """For each record, False when it is an `ok` row whose hash already had one (here or
    earlier in `records`); `added` are the (hash, status) pairs `_APPEND` returned."""
    new_answers = {request_hash for request_hash, status in added if status == "ok"}
    written = []
    for record in records:
        new = record.status != "ok" or record.request_hash in new_answers
        if record.status == "ok":
            # of two records of one hash, the row kept is the first's
            new_answers.discard(record.request_hash)
        written.append(new)
    return written


async def _append(conn: AsyncConnection, records: Sequence[AttemptRecord]) -> list[bool]:
    """Append attempts and add the new answers' cost and tokens to the spend, in one
    statement; as `_written`."""
    added = await conn.execute(_APPEND, _columns(records))
    return _written(records, [(row.request_hash, row.status) for row in added])


async def _append_alone(engine: AsyncEngine, records: Sequence[AttemptRecord]) -> list[bool]:
    """`_append` as a transaction of its own: the statement alone, in autocommit."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await _append(conn, records)


async def record_attempt(engine: AsyncEngine, record: AttemptRecord) -> bool:
    """Append one attempt. False when it is an `ok` row and the hash already had one."""
    return (await _append_alone(engine, [record]))[0]


async def record_attempts(conn: AsyncConnection, records: Sequence[AttemptRecord]) -> set[str]:
    """Append many attempts in the caller's transaction (batch results come by the thousand);
    returns the hashes whose `ok` row is new, and adds their cost and tokens to the spend."""
    if not records:
        return set()
    written = await _append(conn, records)
    return {
        r.request_hash for r, new in zip(records, written, strict=True) if new and r.status == "ok"
    }


_FIND_COMPLETED_MANY = Statement(
    select(llm_calls.c.request_hash, llm_calls.c.response).where(
        llm_calls.c.request_hash
        == any_(bindparam("hashes", type_=ARRAY(llm_calls.c.request_hash.type))),
        llm_calls.c.status == "ok",
    )
)


class Ledger:
    """The ledger as one process's concurrent calls use it: their lookups run as one query
    and their rows are written by one statement, batch by batch."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._lookup_conn = DirectConnection(engine)
        self._write_conn = DirectConnection(engine)
        self._lookups = Coalescer(self._find_many, name="ledger lookups")
        self._writes = Coalescer(self._append_many, name="ledger writes")

    async def find_completed(self, request_hash: str) -> dict[str, Any] | None:
        """As `find_completed`."""
        return await self._lookups.submit(request_hash)

    async def record(self, record: AttemptRecord) -> bool:
        """As `record_attempt`."""
        return await self._writes.submit(record)

    async def aclose(self) -> None:
        await self._writes.drained()
        await self._lookup_conn.aclose()
        await self._write_conn.aclose()

    async def _find_many(self, hashes: Sequence[str]) -> list[dict[str, Any] | None]:
        arguments = _FIND_COMPLETED_MANY.arguments({"hashes": list(set(hashes))})
        async with self._lookup_conn.held() as conn:
            rows = await conn.fetch(_FIND_COMPLETED_MANY.sql, *arguments)
        found: dict[str, dict[str, Any]] = {row["request_hash"]: row["response"] for row in rows}
        return [found.get(h) for h in hashes]

    async def _append_many(self, records: Sequence[AttemptRecord]) -> list[bool]:
        # one statement, so atomic in autocommit
        arguments = _APPEND_DIRECT.arguments(_columns(records))
        async with self._write_conn.held() as conn:
            rows = await conn.fetch(_APPEND_DIRECT.sql, *arguments)
        return _written(records, [(row["request_hash"], row["status"]) for row in rows])


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
