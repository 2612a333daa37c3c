"""The completeness model on hand-made facts in a real Postgres, and dead-letter reasons from
the errors Postgres really raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config, load_config
from specstress.db import labels, store
from specstress.db.engine import create_engine
from specstress.pipeline.progress import completeness, pending_units
from specstress.pipeline.progress.reasons import from_exception
from tests.paths import DEMO_CONFIG
from tests.support.rows import add_answer, add_pair, add_scenario, add_spectrum, add_verdict

ACTIVE = ("aurora-cautious", "aurora-deferential", "borealis-candid")
RETIRED = "borealis-literal"
# scenario -> models that answered it
ANSWERS = {
    "s1": (*ACTIVE, RETIRED),
    "s2": ("aurora-cautious", "borealis-candid"),
}


def _rid(scenario: str, model: str) -> str:
    return f"{scenario}-{model}"


@pytest.fixture
def config() -> Config:
    return load_config(DEMO_CONFIG)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _facts(engine: AsyncEngine) -> None:
    """One pair: two scenarios and a dropped variant; a retired model that answered once; one
    answer dead-lettered, one unclassified; part of the D, verdicts and labels stored."""
    await add_pair(engine, "p1")
    for model in (*ACTIVE, RETIRED):
        family = model.split("-")[0]
        await store.register_model(engine, model, family)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE models SET active = false WHERE model_key = :m"), {"m": RETIRED}
        )
    for scenario, variant in (("s1", "neutral"), ("s2", "value1")):
        await add_scenario(engine, scenario, "p1", variant, generator="writer-a")
    await store.insert_drop(
        engine, pair_id="p1", variant="value2", generator="writer-a", reason="refused", raw=""
    )
    await add_spectrum(engine, "x1", "p1")
    for scenario, models in ANSWERS.items():
        for model in models:
            await add_answer(engine, _rid(scenario, model), scenario, model)
    await store.record_dead_letter(
        engine,
        consumer="responder__responses_requested",
        subject="specstress.responses.requested",
        stream_sequence=7,
        deliveries=1,
        reason="llm terminal_client: refused",
        reason_code="provider_refused",
        stage="responses",
        unit="s2/aurora-deferential",
        payload="{}",
    )
    classified = [_rid("s1", m) for m in ANSWERS["s1"]] + [_rid("s2", "aurora-cautious")]
    await store.insert_classifications(
        engine,
        [
            {
                "response_id": rid,
                "scenario_id": rid.split("-")[0],
                "spectrum_id": "x1",
                "classifier": "classifier",
                "value1_position": 3,
                "value1_confidence": 1.0,
                "value1_reasoning": "r",
                "value2_position": 3,
                "value2_confidence": 1.0,
                "value2_reasoning": "r",
            }
            for rid in classified
        ],
    )
    # s1's sets: all (4 members), aurora (2), borealis (2: missing), cautious-vs-deferential (2)
    await store.upsert_disagreement(
        engine,
        [
            _d("s1", "all", 4, high=True),
            _d("s1", "aurora", 2, high=False),
            _d("s1", "cautious-vs-deferential", 2, high=False),
        ],
    )
    await add_verdict(engine, "v1", _rid("s1", "aurora-cautious"), "s1", "judge-strict")
    await labels.insert_refusal_types(
        engine,
        [
            {
                "response_id": _rid("s1", "aurora-cautious"),
                "scenario_id": "s1",
                "model_key": "aurora-cautious",
                "labeller": "classifier",
                "prompt_version": "v",
                "refusal_type": "Full Compliance",
                "reasoning": "r",
            }
        ],
    )


def _d(scenario: str, model_set: str, members: int, *, high: bool) -> dict[str, Any]:
    return {
        "scenario_id": scenario,
        "model_set": model_set,
        "members": members,
        "value1_std": 2.0 if high else 0.0,
        "value2_std": 0.0,
        "disagreement": 2.0 if high else 0.0,
        "high": high,
    }


async def test_each_stage_counts_expected_done_dead_and_pending(
    engine: AsyncEngine, config: Config
) -> None:
    await _facts(engine)
    done = await completeness(engine, config)
    figures = {s.stage: (s.expected, s.done, s.dead_lettered, s.pending) for s in done.stages}
    assert figures == {
        "scenarios": (3, 3, 0, 0),  # a recorded drop settles its variant
        # 3 active models x 2 scenarios, plus the retired model's one answer
        "responses": (7, 6, 1, 0),
        "spectra": (1, 1, 0, 0),
        "classifications": (6, 5, 0, 1),
        "disagreement": (4, 3, 0, 1),
        # s1 is flagged: its two aurora answers x 3 judges under the one spec
        "verdicts": (6, 1, 0, 5),
        "topic_labels": (1, 0, 0, 1),
        "refusal_types": (5, 1, 0, 4),
        "distinctive_values": (4, 0, 0, 4),
    }
    assert not done.settled and not done.complete
    assert done.dead_letters == {"provider_refused": 1}
    assert done.dead_letters_by_stage == {"responses": {"provider_refused": 1}}
    ages = done.stage("classifications").oldest_pending_seconds
    assert ages is not None and ages >= 0
    assert done.stage("responses").oldest_pending_seconds is None
    assert [u.unit for u in await pending_units(engine, config, stage="classifications")] == [
        _rid("s2", "borealis-candid")
    ]

    # one model's view, as the release watcher asks it
    mine = await completeness(engine, config, model_key="aurora-deferential")
    assert (mine.stage("responses").expected, mine.stage("responses").done) == (2, 1)
    assert mine.stage("responses").dead_lettered == 1
    assert mine.stage("classifications").done == 1
    assert mine.stage("scenarios").expected == 0

    # a late member makes a stored D pending again until it is recomputed
    await store.upsert_disagreement(engine, [_d("s1", "borealis", 2, high=False)])
    assert (await completeness(engine, config)).stage("disagreement").pending == 0
    await store.insert_classifications(
        engine,
        [
            {
                "response_id": _rid("s2", "borealis-candid"),
                "scenario_id": "s2",
                "spectrum_id": "x1",
                "classifier": "classifier",
                "value1_position": 1,
                "value1_confidence": 1.0,
                "value1_reasoning": "r",
                "value2_position": 1,
                "value2_confidence": 1.0,
                "value2_reasoning": "r",
            }
        ],
    )
    after = await completeness(engine, config)
    # s2 now has two classified members of "all" (of no other set): a new D unit
    assert after.stage("disagreement").pending == 1
    assert after.stage("classifications").pending == 0

    # a replayed dead letter's unit is pending again
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE dead_letters SET replayed_at = now()"))
    replayed = await completeness(engine, config)
    assert replayed.stage("responses").pending == 1
    assert replayed.dead_letters == {}


async def test_database_refusals_get_a_code_and_a_message_without_the_payload(
    engine: AsyncEngine,
) -> None:
    secret = "the model's private words"
    cases = (
        # a NUL byte in text, and the escape of one in jsonb: bytes Postgres refuses
        ("INSERT INTO dead_letters (consumer, subject, deliveries, reason, payload) "
         "VALUES ('c', 's', 1, 'r', :v)", f"{secret}\x00", "invalid_bytes"),
        ("SELECT CAST(:v AS jsonb)::text", '{"a": "' + secret + '\\u0000"}', "invalid_bytes"),
        # longer than its column
        ("INSERT INTO models (model_key, family) VALUES (:v, 'f')", secret * 10, "oversize"),
        # breaks a constraint
        ("INSERT INTO scenarios (scenario_id, pair_id, variant, generator, prompt_version, query)"
         " VALUES ('s', 'no-pair', 'neutral', 'g', 'v', :v)", secret, "schema_invalid"),
    )  # fmt: skip
    for sql, value, code in cases:
        with pytest.raises(Exception) as raised:
            async with engine.begin() as conn:
                await conn.execute(text(sql), {"v": value})
        reason = from_exception(raised.value)
        assert reason.code == code, (sql, raised.value)
        assert secret not in reason.message and "INSERT" not in reason.message
        assert "SQLSTATE" in reason.message
