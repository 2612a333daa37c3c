"""The stages' facts and lookups as concurrent handlers make them: one transaction and one
query for many callers, each caller with its own rows, its own answer and its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db import store
from specstress.db.engine import create_engine
from tests.support.rows import add_answer, add_scenario, add_verdict, pair_row

MODELS = ("alpha-1", "beta-1", "gamma-1")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=4)
    await store.insert_pairs(
        created,
        [{**pair_row(f"p{n}", value2=f"kindness {n}"), "run_index": n} for n in range(6)],
    )
    for model in MODELS:
        await store.register_model(created, model, model.split("-")[0])
    yield created
    await created.dispose()


async def _scenario(engine: AsyncEngine, n: int) -> None:
    await add_scenario(engine, f"s{n}", f"p{n}", "neutral", query=f"question {n}")


async def _answer(engine: AsyncEngine, scenario: str, model: str) -> None:
    await add_answer(
        engine,
        f"{scenario}/{model}",
        scenario,
        model,
        text=f"{model} on {scenario}",
        llm_call_hash="0" * 64,
    )


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


async def test_concurrent_writes_and_lookups_each_get_their_own(engine: AsyncEngine) -> None:
    await asyncio.gather(*(_scenario(engine, n) for n in range(6)))
    await asyncio.gather(*(_answer(engine, f"s{n}", MODELS[n % 3]) for n in range(6)))
    keys = [(f"s{n}", model) for n in range(7) for model in MODELS]
    found = await asyncio.gather(*(store.scenario_with_response(engine, s, m) for s, m in keys))
    for (scenario, model), result in zip(keys, found, strict=True):
        if scenario == "s6":
            assert result is None  # no such scenario
            continue
        assert result is not None
        row, response_id = result
        assert (row.scenario_id, row.query) == (scenario, f"question {scenario[1:]}")
        n = int(scenario[1:])
        assert response_id == (f"{scenario}/{model}" if MODELS[n % 3] == model else None)
    answers = await asyncio.gather(*(store.scenario_responses(engine, f"s{n}") for n in range(7)))
    assert [[a.response_id for a in rows] for rows in answers] == [
        *([f"s{n}/{MODELS[n % 3]}"] for n in range(6)),
        [],
    ]
    contexts = await asyncio.gather(
        *(store.classification_context(engine, f"s{n}") for n in range(7))
    )
    assert [c.answered_by if c else None for c in contexts] == [
        *(frozenset({MODELS[n % 3]}) for n in range(6)),
        None,
    ]
    assert all(c.active_models == frozenset(MODELS) for c in contexts if c)


async def test_a_row_postgres_refuses_fails_only_its_caller(engine: AsyncEngine) -> None:
    await _scenario(engine, 1)
    outcomes = await asyncio.gather(
        _answer(engine, "s1", "alpha-1"),
        _answer(engine, "no-such-scenario", "beta-1"),
        _answer(engine, "s1", "gamma-1"),
        _answer(engine, "s1", "alpha-1"),  # a redelivery: changes nothing
        return_exceptions=True,
    )
    # the statements run on asyncpg directly (`specstress.db.direct`), so its error comes as is
    assert [type(o) for o in outcomes] == [
        type(None),
        asyncpg.ForeignKeyViolationError,
        type(None),
        type(None),
    ]
    assert await _count(engine, "responses") == 2


async def test_verdicts_and_their_citations_written_together(engine: AsyncEngine) -> None:
    await _scenario(engine, 1)
    await asyncio.gather(*(_answer(engine, "s1", model) for model in MODELS))
    await asyncio.gather(
        *(
            add_verdict(
                engine,
                f"verdict-{model}",
                f"s1/{model}",
                "s1",
                "judge-1",
                spec_id="spec",
                cited_sections=[f"section-{n}" for n in range(n)],
            )
            for n, model in enumerate(MODELS)
        )
    )
    assert await _count(engine, "verdicts") == 3
    assert await _count(engine, "verdict_citations") == 0 + 1 + 2
    exists = await asyncio.gather(
        *(store.verdict_exists(engine, f"verdict-{m}") for m in (*MODELS, "delta-1"))
    )
    assert exists == [True, True, True, False]
    response = await store.get_response(engine, "s1/beta-1")
    assert response is not None
    assert (response[0].model_key, response[1]) == ("beta-1", "question 1")
    assert await store.get_response(engine, "s1/none") is None
