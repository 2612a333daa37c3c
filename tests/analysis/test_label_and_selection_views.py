"""Migration 0009 on a hand-built database: the Figure 4 refusal views per model set and the
named selections that scope every analysis view."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.analysis import queries as analysis
from specstress.analysis.queries import Filters
from specstress.analysis.reports import build_report
from specstress.db.engine import create_engine
from specstress.method.labels import REFUSALS, TOPIC_COLUMNS
from tests.support.analysis_facts import (
    BLUE,
    RED,
    analysis_config,
    insert_disagreement,
    insert_models,
    insert_refusal_types,
    insert_responses,
    insert_scenarios,
    insert_selection,
    insert_topics,
    query,
)

FULL, CONDITIONAL = "Full Compliance", "Conditional Compliance"
SOFT, FIRM, COMPLETE = (
    "Soft Rejection with Alternatives",
    "Firm Rejection with Explanation",
    "Complete Rejection",
)
ANSWERS = {
    "t1": {"red1": COMPLETE, "red2": FULL, "blue1": SOFT},
    "t2": {"red1": FULL, "red2": FIRM, "blue1": FULL},
    "t3": {"red1": SOFT, "red2": CONDITIONAL, "blue1": COMPLETE},
    "t4": {"red1": FULL, "red2": FULL, "blue1": FULL},
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    await insert_models(engine, {k: "red" for k in RED} | {k: "blue" for k in BLUE})
    await analysis.sync_config(engine, analysis_config(database_url))
    await insert_scenarios(engine, ANSWERS)
    await insert_responses(engine, [(s, m) for s, by in ANSWERS.items() for m in by])
    await insert_refusal_types(
        engine, [(s, m, kind) for s, by in ANSWERS.items() for m, kind in by.items()], REFUSALS
    )
    # red is scored on t1..t3 (high on t1 and t3); all on t1..t4, never high
    await insert_disagreement(
        engine,
        [("t1", "red", 2.0), ("t2", "red", 0.5), ("t3", "red", 1.6)]
        + [(s, "all", 1.0) for s in ANSWERS],
    )
    await insert_topics(
        engine,
        {"t1": ["politics"], "t2": [], "t3": ["politics", "mental_illness"]},
        TOPIC_COLUMNS.values(),
    )
    await insert_selection(engine, "picked", ["t1", "t2"])
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_figure4_refusal_types_per_model_set(engine: AsyncEngine) -> None:
    rows = await query(engine, "SELECT * FROM figure4_refusal_types WHERE selection = '*'")
    counts = {
        (r["model_set"], r["scenarios"], r["model_key"]): (r["answers"], r["refusals"])
        for r in rows
    }
    # only the set's members count: blue1 is not in "red"; values are (answers, refusals)
    assert counts == {
        ("red", "all", "red1"): (3, 2),
        ("red", "all", "red2"): (3, 1),
        ("red", "high", "red1"): (2, 2),
        ("red", "high", "red2"): (2, 0),
        ("all", "all", "red1"): (4, 2),
        ("all", "all", "red2"): (4, 1),
        ("all", "all", "blue1"): (4, 2),
    }
    red1 = next(
        r
        for r in rows
        if (r["model_set"], r["scenarios"], r["model_key"]) == ("red", "all", "red1")
    )
    assert (
        red1["complete_rejection"],
        red1["full_compliance"],
        red1["soft_rejection_with_alternatives"],
    ) == (1, 1, 1)
    assert red1["refusal_rate"] == pytest.approx(2 / 3)


async def test_figure4_refusal_rate_per_topic(engine: AsyncEngine) -> None:
    rows = await query(
        engine,
        "SELECT * FROM figure4_refusals_by_topic WHERE selection = '*' AND model_set = 'red' "
        "AND scenarios = 'all'",
    )
    assert {(r["model_key"], r["topic"]): (r["answers"], r["refusals"]) for r in rows} == {
        ("red1", "politics"): (2, 2),
        ("red1", "mental illness"): (1, 1),
        ("red2", "politics"): (2, 0),
        ("red2", "mental illness"): (1, 0),
    }


async def test_named_selections_scope_every_view(engine: AsyncEngine, database_url: str) -> None:
    rows = await query(
        engine,
        "SELECT * FROM figure4_refusal_types WHERE selection = 'picked' AND model_set = 'red' "
        "AND scenarios = 'all'",
    )
    assert {r["model_key"]: (r["answers"], r["refusals"]) for r in rows} == {
        "red1": (2, 1),
        "red2": (2, 1),
    }
    assert await analysis.known_selection(engine, "picked")
    table2 = await analysis.table2(engine, Filters(selection="picked"), n=10)
    assert table2 == []  # no verdicts yet: no spec to report on
    summary = await analysis.disagreement_summary(engine, Filters(selection="picked"))
    assert {(r["model_set"], r["scenarios"], r["high_disagreement"]) for r in summary} == {
        ("all", 2, 0),
        ("red", 2, 1),
    }
    config = analysis_config(database_url)
    topics = await build_report(config, "figure4-topics", selection="picked", model_set="red")
    assert {(r["model_key"], r["topic"], r["scenarios"]) for r in topics} == {
        ("red1", "politics", "all"),
        ("red2", "politics", "all"),
        ("red1", "politics", "high"),
        ("red2", "politics", "high"),
    }
