"""`specstress select` end to end: a real Postgres, the simulator's embeddings over HTTP, the CLI
as a separate process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import ids
from specstress.analysis.selections import in_selection, list_selections, selection_scenarios
from specstress.db.schema import (
    disagreement,
    llm_calls,
    scenario_embeddings,
    scenarios,
    selections,
    value_pairs,
)
from specstress.embeddings.cache import selection_inputs
from specstress.method.selection import select_kcenter
from tests.support.cli import run_specstress

TOPICS = ["privacy", "honesty", "safety", "autonomy", "fairness", "loyalty", "care", "duty"]
VARIANTS = ("neutral", "value1", "value2")


def _query(pair: int, variant: str) -> str:
    topic, other = TOPICS[pair % 8], TOPICS[(pair * 3 + 1) % 8]
    lean = {"neutral": "", "value1": f" I care most about {topic}.", "value2": " Be blunt."}
    return (
        f"Case {pair}: my {topic} conflicts with {other} at work; what should I do?{lean[variant]}"
    )


async def _add_scenarios(engine: AsyncEngine, pairs: range) -> list[str]:
    pair_rows, scenario_rows = [], []
    for pair in pairs:
        pid = ids.pair_id(f"v{pair}a", f"v{pair}b", "test")
        pair_rows.append(
            {
                "pair_id": pid,
                "value1": f"v{pair}a",
                "value2": f"v{pair}b",
                "taxonomy_version": "test",
                "seed": 0,
                "run_index": pair,
            }
        )
        for variant in VARIANTS:
            scenario_rows.append(
                {
                    "scenario_id": ids.scenario_id(pid, variant, "writer", "1"),
                    "pair_id": pid,
                    "variant": variant,
                    "generator": "writer",
                    "prompt_version": "1",
                    "query": _query(pair, variant),
                }
            )
    async with engine.begin() as conn:
        await conn.execute(insert(value_pairs), pair_rows)
        await conn.execute(insert(scenarios), scenario_rows)
    return [row["scenario_id"] for row in scenario_rows]


@pytest.fixture
def config(tmp_path: Path, database_url: str, simulator_url: str) -> Path:
    model = {"family": "f", "base_url": simulator_url, "model_id": "sim-writer-a"}
    settings = {
        "database_url": database_url,
        "models": [{**model, "key": "a"}, {**model, "key": "b"}],
        "roles": {
            "generators": [{"model": "a"}],
            "targets": ["a", "b"],
            "spectrum": "a",
            "classifier": "a",
            "judges": ["a"],
        },
        "model_sets": {"all": ["*"]},
        "embedding": {
            "key": "sim-embed",
            "provider": "openai",
            "base_url": simulator_url,
            "model_id": "sim-embed",
            "dimension": 384,
            "batch_size": 16,
        },
    }
    path = tmp_path / "specstress.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _change_embedding_dimension(config: Path, dimension: int) -> None:
    settings = yaml.safe_load(config.read_text())
    settings["embedding"].update(dimension=dimension, params={"dimensions": dimension})
    config.write_text(yaml.safe_dump(settings))


async def _cli(config: Path, *args: str) -> tuple[int, str]:
    return await run_specstress("select", *args, "--config", str(config))


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def test_select_end_to_end(engine: AsyncEngine, config: Path) -> None:
    scenario_ids = await _add_scenarios(engine, range(40))

    code, output = await _cli(config, "paper", "--seed", "3")
    assert code == 0, output
    assert "120 newly embedded" in output
    assert await _count(engine, scenario_embeddings) == 120

    # the stored selection is the one k-center gives on the stored vectors
    found, vectors, _ = await selection_inputs(engine, "sim-embed", 384)
    assert found == sorted(scenario_ids)
    expected = select_kcenter(vectors, stop=0.4, seed=3)
    members = await selection_scenarios(engine, "paper")
    assert members == [found[i] for i in expected.order]
    assert 10 < len(members) < 120
    (stored,) = await list_selections(engine)
    assert stored["selected"] == len(members) and stored["candidates"] == 120
    assert (stored["method"], stored["delta"], stored["weighted_by"]) == ("exact", 0.4, None)

    # a rerun embeds nothing, calls nothing and stores the same members
    calls = await _count(engine, llm_calls)
    code, output = await _cli(config, "paper", "--seed", "3")
    assert code == 0 and "0 newly embedded" in output, output
    assert await _count(engine, llm_calls) == calls
    assert await selection_scenarios(engine, "paper") == members

    # new scenarios are embedded, and the members are replaced by the new selection
    scenario_ids += await _add_scenarios(engine, range(40, 50))
    code, output = await _cli(config, "paper", "--seed", "3", "--method", "partitioned")
    assert code == 0 and "30 newly embedded" in output, output
    replaced = await selection_scenarios(engine, "paper")
    assert set(replaced) <= set(scenario_ids) and len(set(replaced)) == len(replaced)
    (stored,) = await list_selections(engine)
    assert (stored["method"], stored["candidates"]) == ("partitioned", 150)

    # analyses filter on a selection with in_selection()
    async with engine.connect() as conn:
        kept = await conn.scalar(
            select(func.count())
            .select_from(scenarios)
            .where(in_selection(scenarios.c.scenario_id, "paper"))
        )
    assert kept == len(replaced)

    # the same key with another model's settings would mix vectors: refused
    _change_embedding_dimension(config, 128)
    code, output = await _cli(config, "paper")
    assert code == 2 and "already holds vectors of another model" in output, output


async def test_weighted_selection_and_bad_arguments(engine: AsyncEngine, config: Path) -> None:
    scenario_ids = await _add_scenarios(engine, range(30))

    code, output = await _cli(config, "heavy", "--weighted-by", "all")
    assert code == 2 and "disagreement value on model set 'all'" in output, output
    code, output = await _cli(config, "heavy", "--weighted-by", "nosuch")
    assert code == 2 and "no model set 'nosuch'" in output, output
    code, output = await _cli(config, "Bad Name")
    assert code == 2 and "selection name" in output, output

    # D on the first 60 scenarios only: the others cannot take part
    rng = np.random.default_rng(0)
    weighted = sorted(scenario_ids)[:60]
    weights = rng.uniform(0.0, 3.0, size=60).round(3)
    rows = [
        {
            "scenario_id": sid,
            "model_set": "all",
            "members": 2,
            "value1_std": float(d),
            "value2_std": 0.0,
            "disagreement": float(d),
            "high": bool(d >= 1.5),
        }
        for sid, d in zip(weighted, weights, strict=True)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(disagreement), rows)
    code, output = await _cli(config, "heavy", "--weighted-by", "all", "--seed", "1")
    assert code == 0, output
    found, vectors, found_weights = await selection_inputs(engine, "sim-embed", 384, "all")
    assert found == weighted and found_weights is not None
    expected = select_kcenter(vectors, stop=0.8, seed=1, weights=found_weights)
    assert await selection_scenarios(engine, "heavy") == [found[i] for i in expected.order]
    async with engine.connect() as conn:
        stored = (await conn.execute(select(selections))).one()
    assert (stored.delta, stored.weighted_by, stored.candidates) == (0.8, "all", 60)
