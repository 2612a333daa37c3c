"""Distinctive values mapped to level-2 categories (`specstress map-values`) and Figures 10 and
11: migration 0011 matches the schema, the mapping picks the obvious category through the
simulator's embeddings and is idempotent, and the views equal hand-computed counts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.analysis import queries as analysis
from specstress.analysis.value_mapping import run_value_mapping
from specstress.config import EmbeddingConfig
from specstress.db.engine import create_engine
from specstress.embeddings import text_hash
from specstress.method.taxonomy import load_taxonomy
from tests.support.analysis_facts import (
    _insert,
    analysis_config,
    insert_models,
    insert_responses,
    insert_scenarios,
    insert_selection,
    query,
    response_id,
)
from tests.support.schema import mentioning, schema_differences

TAXONOMY = "tv"
KEY = "emb"
CATEGORIES = {"care": "Care", "truth": "Truth", "order": "Order"}
MAPPING = {"kind": "care", "gentle": "care", "honest": "truth"}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=2)
    yield created
    await created.dispose()


async def _distinctive(engine: AsyncEngine, rows: list[tuple[str, str, list[str]]]) -> None:
    """(scenario, model, value texts in rank order); also stores the scenarios and answers."""
    scenarios = sorted({s for s, _, _ in rows})
    await insert_scenarios(engine, scenarios)
    await insert_models(engine, {m: "f" for _, m, _ in rows})
    await insert_responses(engine, [(s, m) for s, m, _ in rows])
    await _insert(
        engine,
        "distinctive_values",
        (
            {
                "response_id": response_id(s, m),
                "rank": rank,
                "scenario_id": s,
                "model_key": m,
                "value": value,
                "labeller": "writer",
                "prompt_version": "v",
            }
            for s, m, texts in rows
            for rank, value in enumerate(texts, start=1)
        ),
    )


async def test_migration_matches_schema_for_value_categories(engine: AsyncEngine) -> None:
    assert mentioning(await schema_differences(engine), ["value_categories"]) == []


async def test_figures_10_and_11_equal_hand_counts(engine: AsyncEngine) -> None:
    await _distinctive(
        engine,
        [
            ("s1", "a", ["kind"]),
            ("s1", "b", ["honest"]),
            # two values of one category count once for the answer
            ("s2", "a", ["kind", "gentle"]),
            ("s2", "b", ["kind"]),
            ("s3", "a", ["kind"]),
            ("s3", "c", ["honest"]),
            # a has no distinctive values here: s4 is outside every conditional on a
            ("s4", "b", ["honest"]),
        ],
    )
    await _insert(
        engine,
        "values",
        (
            {"taxonomy_version": TAXONOMY, "value_id": i, "name": n, "level": 2}
            for i, n in CATEGORIES.items()
        ),
    )
    await _insert(
        engine,
        "value_categories",
        (
            {
                "value_hash": text_hash(value),
                "taxonomy_version": TAXONOMY,
                "embedding_key": KEY,
                "value": value,
                "category_id": category,
                "category": CATEGORIES[category],
                "similarity": 0.9,
            }
            for value, category in MAPPING.items()
        ),
    )
    await insert_selection(engine, "first", ["s1"])

    figure10 = await analysis.view_report(
        engine, analysis.VIEW_REPORTS["figure10"], analysis.Filters()
    )
    assert {(r["model_key"], r["category"]): r["responses"] for r in figure10} == {
        ("a", "Care"): 3,
        ("b", "Care"): 1,
        ("b", "Truth"): 2,
        ("c", "Truth"): 1,
    }

    figure11 = await analysis.view_report(
        engine, analysis.VIEW_REPORTS["figure11"], analysis.Filters()
    )
    cells = {
        (r["model_a"], r["category_x"], r["model_b"], r["category_y"]): (
            r["scenarios_a_shows_x"],
            r["scenarios_b_shows_y"],
            r["probability"],
        )
        for r in figure11
    }
    # a shows Care in s1, s2, s3; b has values in s1 and s2 and shows Care in s2, Truth in s1
    assert cells[("a", "Care", "b", "Care")] == (2, 1, 0.5)
    assert cells[("a", "Care", "b", "Truth")] == (2, 1, 0.5)
    assert cells[("a", "Care", "b", "Order")] == (2, 0, 0.0)
    assert cells[("a", "Care", "c", "Truth")] == (1, 1, 1.0)
    assert cells[("a", "Care", "c", "Care")] == (1, 0, 0.0)
    # b shows Truth in s1 and s4, but a has values only in s1
    assert cells[("b", "Truth", "a", "Care")] == (1, 1, 1.0)
    assert cells[("b", "Care", "a", "Care")] == (1, 1, 1.0)
    # every (A, X, B) with a scenario in common has one row per level-2 category, A != B
    assert len(cells) == 3 * len({(a, x, b) for a, x, b, _ in cells})
    assert all(a != b for a, _, b, _ in cells)

    in_selection = await analysis.view_report(
        engine, analysis.VIEW_REPORTS["figure11"], analysis.Filters(selection="first")
    )
    shown = {
        (r["model_a"], r["category_x"], r["model_b"], r["category_y"]): r["probability"]
        for r in in_selection
        if r["scenarios_b_shows_y"]
    }
    assert shown == {("a", "Care", "b", "Truth"): 1.0, ("b", "Truth", "a", "Care"): 1.0}


async def test_map_values_picks_the_obvious_category_once(
    engine: AsyncEngine, database_url: str, simulator_url: str
) -> None:
    taxonomy = load_taxonomy("builtin")
    categories = taxonomy.by_level(2)
    config = analysis_config(database_url).model_copy(
        update={
            "embedding": EmbeddingConfig.model_validate(
                {
                    "key": "sim-embed",
                    "provider": "openai",
                    "base_url": simulator_url,
                    "model_id": "sim-embed",
                    "dimension": 384,
                }
            )
        }
    )
    # each answer names a category word for word: its nearest category is that one
    named = [c.name for c in categories[:3]]
    await _distinctive(engine, [("s1", "a", named[:2]), ("s1", "b", named[1:])])

    first = await run_value_mapping(config)
    assert (first.taxonomy_version, first.embedding_key) == (taxonomy.version, "sim-embed")
    assert (first.categories, first.mapped) == (len(categories), 3)
    rows = await query(engine, "SELECT value, category, similarity FROM value_categories")
    assert {r["value"]: r["category"] for r in rows} == {name: name for name in named}
    assert all(0.0 < r["similarity"] <= 1.0 + 1e-6 for r in rows)

    again = await run_value_mapping(config)
    assert again.mapped == 0
    assert len(await query(engine, "SELECT 1 FROM value_categories")) == 3

    await _distinctive(engine, [("s2", "c", [categories[4].name])])
    assert (await run_value_mapping(config)).mapped == 1
