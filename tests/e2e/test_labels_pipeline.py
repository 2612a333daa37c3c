"""Topics, refusal types and distinctive values through the whole pipeline on the simulator:
every planted label comes back exactly, late answers are labelled on their own, and the refusal
reports equal the counts computed from the planted truth."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from specstress.api import add_model
from specstress.db import labels as label_store
from specstress.db.engine import create_engine
from specstress.local.stack import wait_until_idle
from specstress.method.labels import REFUSAL_TYPES, TOPIC_COLUMNS, TOPICS, is_refusal
from tests.support.pipeline_harness import RunningStack, rows

pytestmark = pytest.mark.e2e
PAIRS = 6
SEED = 3
LATECOMER = "borealis-latecomer"


async def _planted(running: RunningStack, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The simulator's planted labels for every stored answer, by response id."""
    planted = {}
    async with httpx.AsyncClient(base_url=running.sim_url) as client:
        for a in answers:
            model_id = running.config.model(str(a["model_key"])).model_id
            reply = await client.post(
                "/sim/planted/labels", json={"model": model_id, "query": a["query"]}
            )
            reply.raise_for_status()
            planted[str(a["response_id"])] = reply.json()
    return planted


async def _answers(database_url: str) -> list[dict[str, Any]]:
    return await rows(
        database_url,
        "SELECT r.response_id, r.scenario_id, r.model_key, s.query "
        "FROM responses r JOIN scenarios s USING (scenario_id)",
    )


async def _stored_values(database_url: str) -> dict[str, list[str]]:
    stored: dict[str, list[str]] = {}
    for r in await rows(
        database_url, "SELECT response_id, value FROM distinctive_values ORDER BY response_id, rank"
    ):
        stored.setdefault(str(r["response_id"]), []).append(str(r["value"]))
    return stored


async def _flagged(database_url: str) -> set[str]:
    found = await rows(database_url, "SELECT DISTINCT scenario_id FROM disagreement WHERE high")
    return {str(r["scenario_id"]) for r in found}


async def _check_labels(
    running: RunningStack,
    database_url: str,
    answers: list[dict[str, Any]],
    earlier_flagged: frozenset[str] = frozenset(),
    earlier_valued: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Assert every stored label equals the planted one; return the planted labels.

    Labels stay once given: a scenario flagged before a late model joined keeps its topics,
    and answers that got distinctive values keep them, even if the scenario is no longer flagged.
    """
    planted = await _planted(running, answers)
    flagged = await _flagged(database_url)
    assert flagged, "the run should flag some scenario"

    # topics: one label per flagged scenario, none elsewhere
    topic_rows = await rows(database_url, "SELECT * FROM topic_labels")
    stored_topics = {
        str(r["scenario_id"]): {t: r[TOPIC_COLUMNS[t]] for t in TOPICS} for r in topic_rows
    }
    assert set(stored_topics) == flagged | earlier_flagged
    for a in answers:
        if a["scenario_id"] in stored_topics:
            assert stored_topics[a["scenario_id"]] == planted[a["response_id"]]["topics"]

    # refusal types: every answer, by default
    stored_types = {
        str(r["response_id"]): (r["refusal_type"], r["refusal"])
        for r in await rows(
            database_url, "SELECT response_id, refusal_type, refusal FROM refusal_types"
        )
    }
    expected_types = {
        rid: (p["refusal_type"], is_refusal(p["refusal_type"])) for rid, p in planted.items()
    }
    assert stored_types == expected_types

    # distinctive values: every answer on a flagged scenario, in the planted order. A late
    # answer to a scenario it unflags may or may not get them, depending on whether its
    # classification or the new D was handled first; if it has them, they are the planted ones.
    stored_values = await _stored_values(database_url)
    required = {
        a["response_id"]
        for a in answers
        if a["scenario_id"] in flagged or a["response_id"] in earlier_valued
    }
    allowed = required | {a["response_id"] for a in answers if a["scenario_id"] in earlier_flagged}
    assert required <= set(stored_values) <= allowed
    for response_id, values in stored_values.items():
        assert values == planted[response_id]["distinctive_values"], response_id
    return planted


async def _check_reports(
    database_url: str, answers: list[dict[str, Any]], planted: dict[str, Any]
) -> None:
    """Refusal rates per model, overall and per topic, against counts from the planted truth."""
    types: dict[str, Counter[str]] = {}
    by_topic: Counter[tuple[str, str, bool]] = Counter()
    labelled = {
        str(r["scenario_id"])
        for r in await rows(database_url, "SELECT scenario_id FROM topic_labels")
    }
    for a in answers:
        label = planted[a["response_id"]]
        types.setdefault(a["model_key"], Counter())[label["refusal_type"]] += 1
        if a["scenario_id"] in labelled:
            for topic, present in label["topics"].items():
                if present:
                    by_topic[(a["model_key"], topic, is_refusal(label["refusal_type"]))] += 1
    engine = create_engine(database_url)
    try:
        rates = await label_store.refusal_rates(engine)
        topic_rates = await label_store.refusal_rates_by_topic(engine)
    finally:
        await engine.dispose()
    assert [r.model_key for r in rates] == sorted(types)
    for rate in rates:
        expected = types[rate.model_key]
        assert rate.by_type == {t: expected[t] for t in REFUSAL_TYPES}
        refusals = sum(n for t, n in expected.items() if is_refusal(t))
        assert (rate.responses, rate.refusals) == (sum(expected.values()), refusals)
        assert rate.rate == pytest.approx(refusals / sum(expected.values()))
    got = {(r.model_key, r.topic): (r.responses, r.refusals) for r in topic_rates}
    keys = {(model, topic) for model, topic, _ in by_topic}
    assert got == {
        (m, t): (by_topic[(m, t, False)] + by_topic[(m, t, True)], by_topic[(m, t, True)])
        for m, t in keys
    }


async def test_pipeline_recovers_planted_topics_refusal_types_and_values(
    finished_stack: RunningStack, database_url: str
) -> None:
    config = finished_stack.config

    answers = await _answers(database_url)
    planted = await _check_labels(finished_stack, database_url, answers)
    # the planted truth must exercise every branch: refusals and compliance, topics on
    # flagged scenarios, answers naming the value they favour as well as their own
    kinds = {is_refusal(p["refusal_type"]) for p in planted.values()}
    assert kinds == {True, False}
    topic_rows = await rows(database_url, "SELECT topic FROM scenario_topics")
    assert topic_rows, "some flagged scenario should carry a topic"
    assert any(len(p["distinctive_values"]) == 2 for p in planted.values())
    await _check_reports(database_url, answers, planted)
    before = await _stored_values(database_url)
    flagged_before = frozenset(await _flagged(database_url))

    # a model registered later: its answers are labelled on their own, compared against
    # the others, and nothing stored for the earlier models changes
    await add_model(config, LATECOMER)
    await wait_until_idle(config, timeout=180, stack=finished_stack.stack)
    answers = await _answers(database_url)
    assert sum(a["model_key"] == LATECOMER for a in answers) > 0
    planted = await _check_labels(
        finished_stack, database_url, answers, flagged_before, frozenset(before)
    )
    after = await _stored_values(database_url)
    assert {rid: v for rid, v in after.items() if rid in before} == before
    await _check_reports(database_url, answers, planted)
    dead = await rows(database_url, "SELECT count(*) AS n FROM dead_letters")
    assert dead[0]["n"] == 0
