"""The coalescer against a real Postgres: one statement for many callers, each caller with its
own result or its own error."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.batching import Coalescer, PerEngine
from specstress.db.engine import create_engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=2)
    async with created.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE marks (mark_id int PRIMARY KEY, size int NOT NULL CHECK (size >= 0))"
            )
        )
    yield created
    await created.dispose()


class Doubler:
    """Doubles numbers in Postgres, one statement per batch, and remembers each batch."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()

    async def __call__(self, numbers: Sequence[int]) -> list[int]:
        self.batches.append(list(numbers))
        self.started.set()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT n * 2 AS twice FROM unnest(CAST(:numbers AS int[])) WITH ORDINALITY"
                    " AS u(n, position) ORDER BY position"
                ),
                {"numbers": list(numbers)},
            )
            return [row.twice for row in rows]


class Marker:
    """Inserts (mark_id, size) rows, all of a batch in one statement and one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.batches: list[list[tuple[int, int]]] = []

    async def __call__(self, marks: Sequence[tuple[int, int]]) -> list[int]:
        self.batches.append(list(marks))
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                text(
                    "INSERT INTO marks SELECT * FROM unnest(CAST(:ids AS int[]), CAST(:sizes AS int[]))"
                    " RETURNING mark_id"
                ),
                {"ids": [m[0] for m in marks], "sizes": [m[1] for m in marks]},
            )
            return sorted(row.mark_id for row in rows)  # one row per mark, in id order here


async def _marks(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return [r.mark_id for r in await conn.execute(text("SELECT mark_id FROM marks ORDER BY 1"))]


async def test_concurrent_callers_share_one_statement_and_get_their_own_results(
    engine: AsyncEngine,
) -> None:
    doubler = Doubler(engine)
    coalescer = Coalescer(doubler, name="double")
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(50)))
    assert results == [2 * n for n in range(50)]
    assert doubler.batches == [list(range(50))]


async def test_items_arriving_while_a_batch_runs_make_the_next_batch_in_order(
    engine: AsyncEngine,
) -> None:
    doubler = Doubler(engine)
    coalescer = Coalescer(doubler, name="double", max_batch=4)

    async def later(n: int) -> int:
        await asyncio.sleep(0.001 * n)
        return await coalescer.submit(n)

    results = await asyncio.gather(
        *(later(n) for n in range(10)), *(coalescer.submit(n) for n in range(10, 20))
    )
    assert results == [2 * n for n in range(20)]
    assert all(len(batch) <= 4 for batch in doubler.batches)
    # batches run one after another, each item once, and the items within them keep their order
    flat = [n for batch in doubler.batches for n in batch]
    assert sorted(flat) == list(range(20))
    assert flat[:10] == list(range(10, 20))
    assert [n for n in flat if n < 10] == list(range(10))
    assert len(doubler.batches) < 20


async def test_a_bad_row_fails_only_its_own_caller(engine: AsyncEngine) -> None:
    marker = Marker(engine)
    coalescer = Coalescer(marker, name="mark")
    outcomes = await asyncio.gather(
        *(coalescer.submit((n, -1 if n == 3 else n)) for n in range(6)), return_exceptions=True
    )
    assert isinstance(outcomes[3], IntegrityError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 1, 2, 4, 5]
    assert await _marks(engine) == [0, 1, 2, 4, 5]
    # the whole batch once, then each member alone
    assert marker.batches[0] == [(n, -1 if n == 3 else n) for n in range(6)]
    assert marker.batches[1:] == [[(n, -1 if n == 3 else n)] for n in range(6)]


async def test_a_lost_connection_fails_every_member_at_once() -> None:
    calls: list[list[int]] = []

    async def unreachable(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        raise ConnectionRefusedError("no database here")

    coalescer = Coalescer(unreachable, name="away")
    outcomes = await asyncio.gather(
        *(coalescer.submit(n) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, ConnectionRefusedError) for o in outcomes)
    assert calls == [[0, 1, 2, 3, 4]]


async def test_cancelled_callers(engine: AsyncEngine) -> None:
    doubler = Doubler(engine)
    discarded: list[tuple[int, int]] = []
    coalescer = Coalescer(doubler, name="double", discard=lambda n, r: discarded.append((n, r)))
    # given up before its batch started: never run
    early = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    early.cancel()
    assert await coalescer.submit(2) == 4
    assert doubler.batches == [[2]]
    # given up while its batch ran: its result goes to `discard`
    doubler.started.clear()
    late = asyncio.create_task(coalescer.submit(3))
    await doubler.started.wait()
    late.cancel()
    await coalescer.drained()
    assert discarded == [(3, 6)]
    with pytest.raises(asyncio.CancelledError):
        await late


async def test_posted_items_run_without_a_waiter(engine: AsyncEngine) -> None:
    marker = Marker(engine)
    coalescer = Coalescer(marker, name="mark")
    for n in range(3):
        coalescer.post((n, n))
    coalescer.post((9, -1))  # fails alone, logged
    await coalescer.drained()
    assert await _marks(engine) == [0, 1, 2]


async def test_one_made_per_engine_and_dropped_with_it(
    engine: AsyncEngine, database_url: str
) -> None:
    made = PerEngine(Doubler)
    other = create_engine(database_url, pool_size=1)
    assert made(engine) is made(engine)
    assert made(other) is not made(engine)
    assert await Coalescer(made(other), name="double").submit(21) == 42
    await other.dispose()
    gone = weakref.ref(made(other))
    del other
    gc.collect()
    assert gone() is None
