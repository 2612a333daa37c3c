"""The label tables on a real Postgres: migration 0006 matches the schema, writes are idempotent
and first-wins, and the refusal reports equal hand-computed figures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db import labels, store
from specstress.db.engine import create_engine
from specstress.method.labels import REFUSAL_TYPES, TOPICS
from tests.support.rows import add_answer, add_pair, add_scenario
from tests.support.schema import mentioning, schema_differences

MY_TABLES = ("topic_labels", "refusal_types", "distinctive_values")
MODELS = ("m1", "m2")
SCENARIOS = ("s1", "s2", "s3")
# (scenario, model) -> refusal type
TYPES = {
    ("s1", "m1"): "Full Compliance",
    ("s1", "m2"): "Complete Rejection",
    ("s2", "m1"): "Soft Rejection with Alternatives",
    ("s2", "m2"): "Conditional Compliance",
    ("s3", "m1"): "Firm Rejection with Explanation",
    ("s3", "m2"): "Firm Rejection with Explanation",
}


def _rid(scenario: str, model: str) -> str:
    return f"{scenario}-{model}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Three scenarios answered by two models; no labels yet."""
    engine = create_engine(database_url)
    await add_pair(engine, "p1")
    for model in MODELS:
        await store.register_model(engine, model, "family")
    for scenario, variant in zip(SCENARIOS, ("neutral", "value1", "value2"), strict=True):
        await add_scenario(engine, scenario, "p1", variant)
        for model in MODELS:
            await add_answer(engine, _rid(scenario, model), scenario, model)
    try:
        yield engine
    finally:
        await engine.dispose()


def _topics(*present: str) -> dict[str, bool]:
    return {topic: topic in present for topic in TOPICS}


async def _label_everything(engine: AsyncEngine) -> None:
    await labels.insert_refusal_types(
        engine,
        [
            {
                "response_id": _rid(scenario, model),
                "scenario_id": scenario,
                "model_key": model,
                "labeller": "labeller",
                "prompt_version": "v",
                "refusal_type": refusal_type,
                "reasoning": "because",
            }
            for (scenario, model), refusal_type in TYPES.items()
        ],
    )
    for scenario, topics in (
        ("s1", _topics("politics", "mental illness")),
        ("s2", _topics("politics")),
    ):
        await labels.insert_topic_labels(
            engine, scenario_id=scenario, labeller="labeller", prompt_version="v", topics=topics
        )
    # set "all" flags s1 and s2; set "pair" flags s2 only
    await store.upsert_disagreement(
        engine,
        [
            {
                "scenario_id": scenario,
                "model_set": model_set,
                "members": 2,
                "value1_std": d,
                "value2_std": 0.0,
                "disagreement": d,
                "high": d >= 1.5,
            }
            for scenario, model_set, d in (
                ("s1", "all", 2.0),
                ("s2", "all", 2.5),
                ("s3", "all", 0.5),
                ("s1", "pair", 1.0),
                ("s2", "pair", 3.0),
                ("s3", "pair", 0.0),
            )
        ],
    )


async def test_migration_matches_schema_for_the_label_tables(engine: AsyncEngine) -> None:
    assert mentioning(await schema_differences(engine), MY_TABLES) == []
    async with engine.connect() as conn:
        checks = await conn.execute(
            text(
                "SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid IN "
                "('refusal_types'::regclass, 'distinctive_values'::regclass)"
            )
        )
        assert {r.conname for r in checks} == {
            "ck_refusal_types_refusal_type",
            "ck_refusal_types_refusal",
            "ck_distinctive_values_rank",
        }


async def test_topic_labels_are_kept_first_and_unpivoted(engine: AsyncEngine) -> None:
    assert await labels.get_topic_labels(engine, "s1") is None
    first = _topics("politics", "ethics & moral reasoning")
    for topics in (first, _topics("cyber security")):
        await labels.insert_topic_labels(
            engine, scenario_id="s1", labeller="a", prompt_version="v", topics=topics
        )
    assert await labels.get_topic_labels(engine, "s1") == first
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT scenario_id, topic FROM scenario_topics"))
        assert sorted((r.scenario_id, r.topic) for r in rows) == [
            ("s1", "ethics & moral reasoning"),
            ("s1", "politics"),
        ]


async def test_refusal_flag_always_matches_the_type(engine: AsyncEngine) -> None:
    row = {
        "response_id": _rid("s1", "m1"),
        "scenario_id": "s1",
        "model_key": "m1",
        "labeller": "a",
        "prompt_version": "v",
        "refusal_type": "Complete Rejection",
        "reasoning": "r",
    }
    await labels.insert_refusal_types(engine, [row])
    await labels.insert_refusal_types(engine, [{**row, "refusal_type": "Full Compliance"}])
    context = await store.labelling_context(engine, "s1")
    assert context is not None and context.refusal_labelled == {_rid("s1", "m1")}
    async with engine.begin() as conn:
        stored = (await conn.execute(text("SELECT refusal_type, refusal FROM refusal_types"))).all()
        assert [tuple(r) for r in stored] == [("Complete Rejection", True)]
    for bad in (
        "INSERT INTO refusal_types VALUES ('s1-m2', 's1', 'm2', 'a', 'v', 'Refusal', true, 'r')",
        "INSERT INTO refusal_types VALUES "
        "('s1-m2', 's1', 'm2', 'a', 'v', 'Full Compliance', true, 'r')",
    ):
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text(bad))


async def test_a_second_list_of_values_never_mixes_into_the_first(engine: AsyncEngine) -> None:
    def rows(response: str, values: list[str]) -> list[dict[str, object]]:
        scenario, model = response.split("-")
        return [
            {
                "response_id": response,
                "rank": rank,
                "scenario_id": scenario,
                "model_key": model,
                "value": value,
                "labeller": "a",
                "prompt_version": "v",
            }
            for rank, value in enumerate(values, start=1)
        ]

    await labels.insert_distinctive_values(engine, rows("s1-m1", ["caution", "honesty"]))
    # a racing call labelled both answers, with a longer list for the first one
    await labels.insert_distinctive_values(
        engine, rows("s1-m1", ["candour", "care", "order"]) + rows("s1-m2", ["autonomy"])
    )
    assert await labels.scenario_distinctive_values(engine, "s1") == {
        "m1": ["caution", "honesty"],
        "m2": ["autonomy"],
    }
    context = await store.labelling_context(engine, "s1")
    assert context is not None and context.distinctive_labelled == {"s1-m1", "s1-m2"}


async def test_backlog_lists_what_flagged_or_classified_work_lacks(engine: AsyncEngine) -> None:
    await _label_everything(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM refusal_types WHERE scenario_id IN ('s2', 's3')"))
        await conn.execute(text("DELETE FROM topic_labels WHERE scenario_id = 's2'"))
        await conn.execute(
            text("INSERT INTO spectra VALUES ('sp', 'p1', 'spectrum', 'v', '[]', '[]', now()); ")
        )
        for scenario in SCENARIOS:
            for model in MODELS:
                await conn.execute(
                    text(
                        "INSERT INTO classifications VALUES "
                        "(:rid, :sid, 'sp', 'c', 3, 0.5, 'r', 3, 0.5, 'r', now())"
                    ),
                    {"rid": _rid(scenario, model), "sid": scenario},
                )
    backlog = await labels.label_backlog(engine, 0.0, "all")
    assert backlog.topics == ["s2"]
    assert sorted(backlog.distinctive_values) == ["s1", "s2"]
    assert sorted(backlog.refusal_types) == ["s2", "s3"]
    flagged_only = await labels.label_backlog(engine, 0.0, "flagged")
    assert flagged_only.refusal_types == ["s2"]
    assert (await labels.label_backlog(engine, 3600.0, "all")).topics == []
    flags = [await store.labelling_context(engine, s) for s in ("s1", "s2", "s3")]
    assert [(c.flagged, c.topics_labelled) for c in flags if c] == [
        (True, True),
        (True, False),
        (False, False),
    ]


async def test_refusal_rates_overall_and_per_topic(engine: AsyncEngine) -> None:
    await _label_everything(engine)

    def by_type(*kinds: str) -> dict[str, int]:
        return {t: kinds.count(t) for t in REFUSAL_TYPES}

    overall = await labels.refusal_rates(engine)
    assert [(r.model_key, r.responses, r.refusals) for r in overall] == [
        ("m1", 3, 2),
        ("m2", 3, 2),
    ]
    assert overall[0].by_type == by_type(
        "Full Compliance", "Soft Rejection with Alternatives", "Firm Rejection with Explanation"
    )
    assert overall[1].rate == pytest.approx(2 / 3)
    flagged_all = await labels.refusal_rates(engine, "all")
    assert [(r.model_key, r.responses, r.refusals) for r in flagged_all] == [
        ("m1", 2, 1),
        ("m2", 2, 1),
    ]
    pair = await labels.refusal_rates(engine, "pair")
    assert [(r.model_key, r.responses, r.refusals, r.rate) for r in pair] == [
        ("m1", 1, 1, 1.0),
        ("m2", 1, 0, 0.0),
    ]
    topics = await labels.refusal_rates_by_topic(engine)
    assert [(r.model_key, r.topic, r.responses, r.refusals) for r in topics] == [
        ("m1", "politics", 2, 1),
        ("m1", "mental illness", 1, 0),
        ("m2", "politics", 2, 1),
        ("m2", "mental illness", 1, 1),
    ]
    topics_pair = await labels.refusal_rates_by_topic(engine, "pair")
    assert [(r.model_key, r.topic, r.responses, r.refusals) for r in topics_pair] == [
        ("m1", "politics", 1, 1),
        ("m2", "politics", 1, 0),
    ]
    assert await labels.refusal_rates(engine, "no-such-set") == []
