"""Fleet-wide rate-limit state, provider pauses and the spend counter on a real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.engine import create_engine
from specstress.db.schema import llm_rate_limits
from specstress.llm.ledger import AttemptRecord, record_attempt
from specstress.llm.traffic import store as limits
from tests.support.rows import paid_attempt
from tests.support.schema import schema_differences

KEY = "k" * 64
OUR_TABLES = {"llm_rate_limits", "llm_provider_pauses", "llm_spend", "message_deferrals"}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=4)
    await limits.ensure_limit(created, KEY, "http://provider/v1", "model-1", "KEY_ENV")
    yield created
    await created.dispose()


def _tables_named(diff: Any) -> set[str]:
    """Table names an autogenerate diff entry (tuple or list of tuples) touches."""
    if isinstance(diff, list):
        return set().union(*(_tables_named(d) for d in diff))
    names = set()
    for part in diff:
        if hasattr(part, "name") and hasattr(part, "columns"):
            names.add(part.name)  # a Table
        elif hasattr(part, "table") and hasattr(part.table, "name"):
            names.add(part.table.name)  # a Column, Index or constraint
    if len(diff) > 2 and isinstance(diff[2], str):
        names.add(diff[2])
    return names


async def test_the_migration_creates_exactly_the_declared_tables(engine: AsyncEngine) -> None:
    diffs = await schema_differences(engine)
    assert [d for d in diffs if _tables_named(d) & OUR_TABLES] == []


async def _reserve(engine: AsyncEngine, **changes: Any) -> limits.Reservation:
    settings: dict[str, Any] = {
        "requests_per_minute": 6,
        "tokens_per_minute": None,
        "tokens": 100,
        "burst_seconds": 1.0,
        "max_wait_seconds": 1000.0,
    }
    return await limits.reserve(engine, KEY, **{**settings, **changes})


async def _seconds_ahead(engine: AsyncEngine, column: str) -> float:
    async with engine.connect() as conn:
        value = await conn.scalar(
            text(f"SELECT {column} - extract(epoch FROM now()) FROM llm_rate_limits")
        )
    return float(value)


async def test_concurrent_reservations_from_two_processes_each_get_their_own_slot(
    engine: AsyncEngine, database_url: str
) -> None:
    other = create_engine(database_url, pool_size=10)
    try:
        # 6 per minute = one slot every 10 s; 20 callers at once over two connection pools
        reservations = await asyncio.gather(
            *(_reserve(engine if n % 2 else other) for n in range(20))
        )
    finally:
        await other.dispose()
    assert all(r.admitted for r in reservations)
    waits = sorted(r.wait_seconds for r in reservations)
    # slot n starts n intervals from now: a lost update would hand two callers one slot
    assert [round(w / 10) for w in waits] == list(range(20))
    assert 199 < await _seconds_ahead(engine, "request_tat") < 201


async def test_a_slot_further_than_max_wait_is_refused_and_left_free(engine: AsyncEngine) -> None:
    for _ in range(3):
        assert (await _reserve(engine, max_wait_seconds=25.0)).admitted
    ahead = await _seconds_ahead(engine, "request_tat")
    refused = await _reserve(engine, max_wait_seconds=25.0)
    assert not refused.admitted
    assert 29 < refused.wait_seconds < 31
    assert await _seconds_ahead(engine, "request_tat") == pytest.approx(ahead, abs=0.5)


async def test_token_reservations_are_corrected_with_the_real_usage(engine: AsyncEngine) -> None:
    # 60,000 tokens a minute, 1,000 a second: a 3,000-token call takes 3 s of the bucket
    def call() -> Any:
        return _reserve(engine, requests_per_minute=None, tokens_per_minute=60_000, tokens=3000)

    first = await call()
    assert first.request_interval is None
    assert first.token_interval == pytest.approx(0.001)
    assert first.wait_seconds == 0
    assert 2.9 < await _seconds_ahead(engine, "token_tat") < 3.1
    # the next one waits until the backlog is down to the 1 s burst
    assert (await call()).wait_seconds == pytest.approx(2.0, abs=0.1)
    assert 5.9 < await _seconds_ahead(engine, "token_tat") < 6.1
    # the first used 1,000 tokens, not 3,000: two seconds of the bucket come back
    await limits.settle(
        engine, KEY, limits.Settlement(tokens_per_minute=60_000, token_correction=-2000)
    )
    assert 3.9 < await _seconds_ahead(engine, "token_tat") < 4.1


async def test_a_burst_of_429s_halves_the_rate_once_and_blocks_the_fleet(
    engine: AsyncEngine,
) -> None:
    throttled = limits.Settlement(
        throttled=True,
        block_seconds=2.0,
        cooldown_seconds=60.0,
        min_factor=0.05,
        decrease=0.5,
    )
    factors = [await limits.settle(engine, KEY, throttled) for _ in range(3)]
    assert factors == [0.5, 0.5, 0.5]
    assert 1.9 < await _seconds_ahead(engine, "blocked_until") < 2.1
    # every process now waits out the block, and paces at half the rate
    blocked = await _reserve(engine)
    assert blocked.wait_seconds == pytest.approx(2.0, abs=0.1)
    assert blocked.rate_factor == 0.5
    assert blocked.request_interval == pytest.approx(20.0)
    # successes win the rate back step by step
    recovered = await limits.settle(engine, KEY, limits.Settlement(succeeded=True, increase=0.25))
    assert recovered == 0.75
    assert await limits.settle(engine, KEY, limits.Settlement(succeeded=True, increase=0.5)) == 1.0


async def test_limits_announced_in_headers_lower_the_configured_ones(engine: AsyncEngine) -> None:
    await limits.settle(
        engine,
        KEY,
        limits.Settlement(learned_requests_per_minute=3, learned_tokens_per_minute=50_000),
    )
    reservation = await _reserve(engine, requests_per_minute=6, tokens_per_minute=90_000)
    assert reservation.learned_requests_per_minute == 3
    assert reservation.request_interval == pytest.approx(20.0)
    assert reservation.token_interval == pytest.approx(60 / 50_000)
    # a higher announced limit does not raise the configured one
    await limits.settle(engine, KEY, limits.Settlement(learned_requests_per_minute=600))
    assert (await _reserve(engine)).request_interval == pytest.approx(10.0)
    async with engine.connect() as conn:
        stored = await conn.scalar(select(llm_rate_limits.c.learned_requests_per_minute))
    assert stored == 600


async def test_spend_counts_each_paid_answer_once(engine: AsyncEngine) -> None:
    def paid(request_hash: str) -> AttemptRecord:
        return paid_attempt(
            request_hash, text="x", input_tokens=100, output_tokens=20, cost_usd=0.5
        )

    failed = AttemptRecord(
        request_hash="b" * 64,
        stage="test",
        model_key="m",
        attempt=1,
        status="error",
        latency_seconds=0.1,
        error_class="retryable",
    )
    assert await record_attempt(engine, paid("a" * 64))
    assert not await record_attempt(engine, paid("a" * 64))  # the same answer again
    assert await record_attempt(engine, failed)
    assert await record_attempt(engine, paid("c" * 64))
    assert await limits.spent(engine) == (1.0, 240)


async def test_pauses_until_cleared_and_for_a_while(engine: AsyncEngine) -> None:
    common = {"api_key_env": "KEY_ENV", "model_key": "m", "reason": "insufficient_quota"}
    await limits.pause_provider(
        engine, provider_key="a", base_url="http://a/v1", pause_seconds=None, **common
    )
    await limits.pause_provider(
        engine, provider_key="b", base_url="http://b/v1", pause_seconds=3600, **common
    )
    await limits.pause_provider(
        engine, provider_key="c", base_url="http://c/v1", pause_seconds=0, **common
    )
    active = await limits.pauses(engine, active_only=True)
    assert [(p.base_url, p.paused_until is None) for p in active] == [
        ("http://a/v1", True),
        ("http://b/v1", False),
    ]
    assert len(await limits.pauses(engine, active_only=False)) == 3
    lifted = await limits.clear_pauses(engine, base_url="http://a/v1")
    assert [p.provider_key for p in lifted] == ["a"]
    assert [p.base_url for p in await limits.pauses(engine, active_only=True)] == ["http://b/v1"]
