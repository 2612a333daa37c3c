"""Never paying twice with claims taken many hashes to a statement: four gateways on four
engines (four replicas of a service) race on the same calls against the simulator process."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import ModelConfig, Timeouts
from specstress.db.engine import create_engine
from specstress.llm import ChatMessage, Gateway
from specstress.llm.claims import CallClaims
from specstress.llm.messages import ModelOutput
from tests.support.simulator import simulator_process

REPLICAS = 4
QUESTIONS = 30


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    """The simulator as its own process, answers 40 ms late so that racing calls overlap."""
    async with simulator_process("--latency-ms", "40") as (line, _):
        found = re.search(r"llm_sim listening on (http://\S+)", line)
        assert found, line
        yield found.group(1)


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[list[AsyncEngine]]:
    created = [create_engine(database_url, pool_size=4) for _ in range(REPLICAS)]
    yield created
    for engine in created:
        await engine.dispose()


def _ask(n: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"Should I keep promise number {n}?")]


async def _scalar(engine: AsyncEngine, query: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(query)) or 0)


async def _advisory_locks(engine: AsyncEngine) -> list[tuple[int, int]]:
    """(backend pid, locks held) of every session holding advisory locks in this database."""
    query = text(
        "SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " GROUP BY pid"
    )
    async with engine.connect() as conn:
        return [(row[0], row[1]) for row in await conn.execute(query)]


async def test_four_replicas_racing_on_the_same_calls_pay_once_per_hash(
    engines: list[AsyncEngine], simulator: str
) -> None:
    model = ModelConfig(
        key="aurora",
        family="test",
        base_url=f"{simulator}/v1",
        model_id="aurora-balanced",
        timeouts=Timeouts(read_seconds=10.0),
    )
    gateways = [Gateway(engine, service=f"replica-{n}") for n, engine in enumerate(engines)]

    async def replica(gateway: Gateway, seed: int) -> list[tuple[int, ModelOutput]]:
        # every replica receives every message, twice (a redelivery), in an order of its own
        order = [n for n in range(QUESTIONS) for _ in range(2)]
        random.Random(seed).shuffle(order)
        outputs = await asyncio.gather(
            *(gateway.generate(model, _ask(n), stage="race") for n in order)
        )
        return list(zip(order, outputs, strict=True))

    try:
        answered = await asyncio.gather(*(replica(g, seed) for seed, g in enumerate(gateways)))
    finally:
        for gateway in gateways:
            await gateway.aclose()

    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{simulator}/sim/stats")).json()
    assert stats["totals"]["ok"] == QUESTIONS
    engine = engines[0]
    assert await _scalar(engine, "SELECT count(*) FROM llm_calls WHERE status = 'ok'") == QUESTIONS
    assert await _scalar(engine, "SELECT count(DISTINCT request_hash) FROM llm_calls") == QUESTIONS
    assert await _scalar(engine, "SELECT count(*) FROM llm_calls WHERE status <> 'ok'") == 0
    outputs = [pair for replica_outputs in answered for pair in replica_outputs]
    assert len(outputs) == REPLICAS * QUESTIONS * 2
    # one answer per question wherever it was asked, and exactly one caller paid for it
    texts: dict[int, set[str]] = {}
    for n, output in outputs:
        texts.setdefault(n, set()).add(output.text)
    assert all(len(seen) == 1 for seen in texts.values())
    paid = sorted(n for n, output in outputs if not output.from_cache)
    assert paid == list(range(QUESTIONS))
    for _ in range(60):
        if not await _advisory_locks(engine):
            break
        await asyncio.sleep(0.05)
    assert await _advisory_locks(engine) == []


async def test_the_claims_of_concurrent_calls_live_in_one_session(
    engines: list[AsyncEngine],
) -> None:
    claims = CallClaims(engines[0])
    release = asyncio.Event()
    holding = 0
    all_held = asyncio.Event()

    async def hold(n: int) -> None:
        nonlocal holding
        async with claims.hold(f"{n + 1:016x}" * 4):
            holding += 1
            if holding == 20:
                all_held.set()
            await release.wait()

    try:
        tasks = [asyncio.create_task(hold(n)) for n in range(20)]
        await asyncio.wait_for(all_held.wait(), 10)
        sessions = await _advisory_locks(engines[1])
        assert [count for _, count in sessions] == [20]
        release.set()
        await asyncio.gather(*tasks)
        await claims.aclose()
        assert await _advisory_locks(engines[1]) == []
    finally:
        release.set()
        await claims.aclose()


async def test_a_hash_claimed_elsewhere_is_waited_for(engines: list[AsyncEngine]) -> None:
    first, second = CallClaims(engines[0]), CallClaims(engines[1])
    order: list[str] = []
    digest = "ab" * 32
    try:
        async with first.hold(digest):
            waiting = asyncio.create_task(_hold_then_note(second, digest, order))
            await asyncio.sleep(0.3)
            order.append("first done")
        await asyncio.wait_for(waiting, 10)
        assert order == ["first done", "second held"]
    finally:
        await first.aclose()
        await second.aclose()


async def _hold_then_note(claims: CallClaims, digest: str, order: list[str]) -> None:
    async with claims.hold(digest):
        order.append("second held")


async def test_callers_in_one_process_take_turns(engines: list[AsyncEngine]) -> None:
    claims = CallClaims(engines[0])
    inside = 0
    most_inside = 0

    async def turn() -> None:
        nonlocal inside, most_inside
        async with claims.hold("cd" * 32):
            inside += 1
            most_inside = max(most_inside, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    try:
        await asyncio.gather(*(turn() for _ in range(8)))
    finally:
        await claims.aclose()
    assert most_inside == 1


async def test_a_lost_session_is_replaced(engines: list[AsyncEngine]) -> None:
    claims = CallClaims(engines[0])
    try:
        async with claims.hold("ef" * 32):
            [(pid, _)] = await _advisory_locks(engines[1])
            async with engines[1].connect() as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # the release found the session gone, and the lock went with it; the next claim
        # opens a new session
        for attempt in range(3):
            try:
                async with claims.hold("ef" * 32):
                    assert [n for _, n in await _advisory_locks(engines[1])] == [1]
                break
            except Exception:
                if attempt == 2:
                    raise
    finally:
        await claims.aclose()
    assert await _advisory_locks(engines[1]) == []
