"""A held connection: compiled statements, reconnecting after a lost session, atomic batches,
and closing with its engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.direct import DirectConnection, Statement
from specstress.db.engine import create_engine, database_unreachable
from specstress.db.schema import models


@pytest.fixture
async def observer(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A second engine, to watch and end the held connection's backend from outside."""
    engine = create_engine(database_url, pool_size=1)
    yield engine
    await engine.dispose()


async def _backends(observer: AsyncEngine) -> set[int]:
    """The pids of the other sessions on the test's database."""
    async with observer.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        return {row.pid for row in rows}


async def _pid(direct: DirectConnection) -> int:
    async with direct.held() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_a_statement_runs_with_its_bound_values_and_json(engine: AsyncEngine) -> None:
    direct = DirectConnection(engine)
    entry = {"base_url": "http://x", "limits": [1, 2]}
    try:
        async with direct.held() as conn:
            await conn.execute(
                "INSERT INTO models (model_key, family, active, entry) VALUES ($1, $2, $3, $4)",
                "m-1",
                "f",
                True,
                entry,
            )
            # `active == True` is a value written into the statement: a parameter as well
            query = Statement(
                select(models.c.model_key, models.c.entry).where(
                    models.c.active == True,  # noqa: E712
                    models.c.family == "f",
                )
            )
            rows = await conn.fetch(query.sql, *query.arguments())
        assert [(r["model_key"], r["entry"]) for r in rows] == [("m-1", entry)]
    finally:
        await direct.aclose()


async def test_a_session_ended_by_the_server_is_replaced(
    engine: AsyncEngine, observer: AsyncEngine
) -> None:
    direct = DirectConnection(engine)
    try:
        first = await _pid(direct)
        async with observer.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        # the batch that finds the session gone gets an error that says so (or the
        # connection already knows and reconnects); the next one has a new session
        try:
            second = await _pid(direct)
        except Exception as error:
            assert database_unreachable(error), error
            second = await _pid(direct)
        assert second != first
        assert first not in await _backends(observer)
    finally:
        await direct.aclose()


async def test_a_failed_transaction_is_rolled_back_and_the_session_kept(
    engine: AsyncEngine,
) -> None:
    direct = DirectConnection(engine)
    insert = "INSERT INTO models (model_key, family) VALUES ($1, 'f')"
    try:
        before = await _pid(direct)
        with pytest.raises(asyncpg.UniqueViolationError) as refused:
            async with direct.held() as conn, conn.transaction():
                await conn.execute(insert, "kept-out")
                await conn.execute(insert, "twice")
                await conn.execute(insert, "twice")
        assert not database_unreachable(refused.value)
        async with direct.held() as conn:
            assert await conn.fetchval("SELECT count(*) FROM models") == 0
        # a refusal leaves the session as it was: no reconnect
        assert await _pid(direct) == before
    finally:
        await direct.aclose()


async def test_a_cancelled_statement_drops_the_session(engine: AsyncEngine) -> None:
    direct = DirectConnection(engine)
    try:
        before = await _pid(direct)

        async def sleep_on_it() -> None:
            async with direct.held() as conn:
                await conn.execute("SELECT pg_sleep(10)")

        task = asyncio.create_task(sleep_on_it())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # what the cut statement left is unknown: the next batch has a session of its own
        assert await _pid(direct) != before
    finally:
        await direct.aclose()


async def test_disposing_the_engine_closes_its_held_connections(
    database_url: str, observer: AsyncEngine
) -> None:
    engine = create_engine(database_url, pool_size=1)
    direct = DirectConnection(engine)
    pid = await _pid(direct)
    assert pid in await _backends(observer)
    await engine.dispose()
    for _ in range(50):
        if pid not in await _backends(observer):
            break
        await asyncio.sleep(0.1)
    assert pid not in await _backends(observer)


async def test_the_engine_session_settings_carry_over(database_url: str) -> None:
    engine = create_engine(
        database_url, pool_size=1, server_settings={"default_transaction_read_only": "on"}
    )
    direct = DirectConnection(engine)
    try:
        assert await _pid(direct) > 0
        async with direct.held() as conn:
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
    finally:
        await direct.aclose()
        await engine.dispose()
