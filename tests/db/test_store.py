"""The stages' facts and lookups as concurrent handlers make them: one transaction and one
query for many callers, each caller with its own rows, its own answer and its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db import store
from specstress.db.engine import create_engine
from specstress.db.schema import verdict_citations, verdicts
from tests.support.rows import (
    VERDICT_FIELDS,
    add_answer,
    add_scenario,
    add_spectrum,
    add_verdict,
    pair_row,
)

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


async def test_pair_states_read_together(engine: AsyncEngine) -> None:
    await add_scenario(engine, "p1-n", "p1", "neutral", query="neutral question")
    await add_scenario(engine, "p1-v2", "p1", "value2", query="leaning question")
    await store.insert_drop(
        engine, pair_id="p1", variant="value1", generator="writer", reason="refusal", raw="no"
    )
    await add_spectrum(engine, "spectrum-p1", "p1")
    await store.insert_drop(
        engine, pair_id="p2", variant="neutral", generator="writer", reason="no tag", raw=""
    )
    states = await asyncio.gather(
        *(store.pair_state(engine, pair) for pair in ("p1", "p2", "p3", "p1", "nope"))
    )
    p1, p2, p3, again, missing = states
    assert p1 is not None and again == p1 and missing is None
    assert (p1.pair.value2, p1.pair.taxonomy_version) == ("kindness 1", "t")
    assert {v: (s.scenario_id, s.query) for v, s in p1.scenarios.items()} == {
        "neutral": ("p1-n", "neutral question"),
        "value2": ("p1-v2", "leaning question"),
    }
    assert p1.drops == {"value1": "refusal"}
    assert p1.spectrum is not None and p1.spectrum.spectrum_id == "spectrum-p1"
    assert p2 is not None and (p2.scenarios, p2.drops, p2.spectrum) == (
        {},
        {"neutral": "no tag"},
        None,
    )
    assert p3 is not None and (p3.scenarios, p3.drops, p3.spectrum) == ({}, {}, None)
    assert await store.pair_scenarios(engine, "p1") == p1.scenarios
    assert await store.pair_scenarios(engine, "nope") == {}
    # the scenario generator's role may not read spectra: its read leaves them out
    progress = await store.pair_state(engine, "p1", with_spectrum=False)
    assert progress is not None and progress.spectrum is None
    assert (progress.pair, progress.scenarios, progress.drops) == (p1.pair, p1.scenarios, p1.drops)


def _d(scenario: str, model_set: str, d: float) -> dict[str, object]:
    return {
        "scenario_id": scenario,
        "model_set": model_set,
        "members": 2,
        "value1_std": d,
        "value2_std": d,
        "disagreement": d,
        "high": d > 1,
    }


async def test_concurrent_disagreement_upserts_share_one_statement(engine: AsyncEngine) -> None:
    await asyncio.gather(*(_scenario(engine, n) for n in range(3)))
    await store.upsert_disagreement(engine, [_d("s0", "all", 0.5)])
    outcomes = await asyncio.gather(
        store.upsert_disagreement(engine, [_d("s0", "all", 2.0), _d("s0", "pairs", 0.1)]),
        store.upsert_disagreement(engine, [_d("no-such-scenario", "all", 1.0)]),
        store.upsert_disagreement(engine, [_d("s1", "all", 1.5)]),
        # the same scenario and set again in the batch: the later rows win
        store.upsert_disagreement(engine, [_d("s1", "all", 0.25)]),
        store.upsert_disagreement(engine, []),
        store.upsert_disagreement(engine, [{"scenario_id": "s2", "model_set": "all"}]),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [
        type(None),
        IntegrityError,
        *[type(None)] * 3,
        ValueError,
    ]
    assert "without members, value1_std" in str(outcomes[-1])
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT scenario_id, model_set, disagreement, high FROM disagreement ORDER BY 1, 2"
            )
        )
        assert [tuple(r) for r in rows] == [
            ("s0", "all", 2.0, True),
            ("s0", "pairs", 0.1, False),
            ("s1", "all", 0.25, False),
        ]


async def test_a_value_too_long_is_refused_not_cut(engine: AsyncEngine) -> None:
    # the rows go in as text arrays: the column's own length must still hold
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await _scenario(engine, 10**40)
    assert await _count(engine, "scenarios") == 0


async def test_json_facts_come_back_as_written(engine: AsyncEngine) -> None:
    await _scenario(engine, 1)
    params = {"temperature": 0.5, "stop": ["x"], "nested": {"none": None}}
    await store.insert_response(
        engine,
        response_id="r1",
        scenario_id="s1",
        model_key="alpha-1",
        text="t",
        thinking=None,
        params=params,
        llm_call_hash="h",
        cut=None,
    )
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT params, cut, cut IS NULL AS absent FROM responses"))
        ).one()
    # `cut` stores None as SQL NULL, not JSON null
    assert (row.params, row.cut, row.absent) == (params, None, True)


async def test_a_batch_of_tables_is_written_whole_or_not_at_all(engine: AsyncEngine) -> None:
    await _scenario(engine, 1)
    await _answer(engine, "s1", "alpha-1")
    verdict = {
        "verdict_id": "v1",
        "response_id": "s1/alpha-1",
        "scenario_id": "s1",
        "judge": "judge-1",
        **VERDICT_FIELDS,
    }
    # a citation of another verdict is refused: the verdict written with it goes too
    citation = {"verdict_id": "v-other", "anchor": "a", "rank": 1}
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await store.write_facts(engine, (verdicts, [verdict]), (verdict_citations, [citation]))
    assert await _count(engine, "verdicts") == 0
