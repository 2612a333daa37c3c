"""The ledger as concurrent calls share it: one batch of writes and lookups, each caller with
its own answer, and the spend counting each paid answer once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.engine import create_engine
from specstress.llm.ledger import AttemptRecord, Ledger
from specstress.llm.traffic.store import spent


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=2)
    yield created
    await created.dispose()


def _attempt(request_hash: str, answer: str | None) -> AttemptRecord:
    """A paid attempt that got `answer`, or a failed one (None)."""
    paid = answer is not None
    return AttemptRecord(
        request_hash=request_hash,
        stage="test",
        model_key="m",
        attempt=1,
        status="ok" if paid else "error",
        latency_seconds=0.1,
        error_class=None if paid else "retryable",
        input_tokens=100 if paid else 0,
        output_tokens=20 if paid else 0,
        cost_usd=0.5 if paid else 0.0,
        response={"text": answer, "thinking": None, "usage": {}, "finish_reason": "stop"}
        if paid
        else None,
    )


async def test_concurrent_writes_keep_one_answer_per_hash_and_count_it_once(
    engine: AsyncEngine,
) -> None:
    ledger = Ledger(engine)
    assert await ledger.record(_attempt("a" * 64, "earlier"))
    written = await asyncio.gather(
        ledger.record(_attempt("a" * 64, "again")),  # answered before: kept as it was
        ledger.record(_attempt("b" * 64, "first")),
        ledger.record(_attempt("b" * 64, None)),
        ledger.record(_attempt("b" * 64, "second")),  # the same hash twice in one batch
        ledger.record(_attempt("c" * 64, "third")),
    )
    assert list(written) == [False, True, True, False, True]
    assert await spent(engine) == (1.5, 360)
    found = await asyncio.gather(*(ledger.find_completed(h * 64) for h in "abcd"))
    assert [None if f is None else f["text"] for f in found] == ["earlier", "first", "third", None]
    async with engine.connect() as conn:
        rows = await conn.scalar(text("SELECT count(*) FROM llm_calls"))
        # the error row has no response at all: SQL NULL, not JSON null
        unanswered = await conn.scalar(
            text("SELECT count(*) FROM llm_calls WHERE response IS NULL")
        )
    assert rows == 4
    assert unanswered == 1


async def test_an_answer_comes_back_as_it_was_written(engine: AsyncEngine) -> None:
    ledger = Ledger(engine)
    answer = 'Ünïcode, "quotes", a\\backslash, 🙂 and a line\nbreak'
    assert await ledger.record(_attempt("e" * 64, answer))
    stored = await ledger.find_completed("e" * 64)
    assert stored == _attempt("e" * 64, answer).response


async def test_a_row_postgres_refuses_fails_only_its_caller(engine: AsyncEngine) -> None:
    ledger = Ledger(engine)
    too_long = _attempt("d" * 65, "no")  # request_hash is 64 characters at most
    written = await asyncio.gather(
        ledger.record(_attempt("a" * 64, "yes")),
        ledger.record(too_long),
        ledger.record(_attempt("b" * 64, "yes")),
        return_exceptions=True,
    )
    assert written[0] is True and written[2] is True
    assert isinstance(written[1], Exception)
    assert await spent(engine) == (1.0, 240)
