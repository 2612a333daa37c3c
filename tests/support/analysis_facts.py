"""A small hand-built database for the analysis views: facts inserted directly with SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config

RED = [f"red{i}" for i in range(1, 6)]
BLUE = [f"blue{i}" for i in range(1, 8)]
TARGETS = RED + BLUE
JUDGES = ["judge-red", "judge-blue", "judge-grey"]


def analysis_config(database_url: str) -> Config:
    def model(key: str, family: str) -> dict[str, Any]:
        return {"key": key, "family": family, "base_url": "http://127.0.0.1:1/v1", "model_id": key}

    return Config.model_validate(
        {
            "database_url": database_url,
            "models": [
                model("writer", "tools"),
                *(model(k, "red") for k in RED),
                *(model(k, "blue") for k in BLUE),
                model("judge-red", "red"),
                model("judge-blue", "blue"),
                # a different family but the same maker as the blue models
                {**model("judge-grey", "grey"), "vendor": "blue"},
            ],
            "roles": {
                "generators": [{"model": "writer"}],
                "targets": TARGETS,
                "spectrum": "writer",
                "classifier": "writer",
                "judges": JUDGES,
            },
            "model_sets": {
                "all": ["*"],
                "red": ["family:red"],
                "blue": ["family:blue"],
                "pair": ["red1", "red2"],
            },
            "specs": [
                {"id": "rules", "version": "1", "path": "builtin:example", "families": ["red"]}
            ],
        }
    )


def response_id(scenario: str, model: str) -> str:
    return f"{scenario}-{model}"


async def _insert(engine: AsyncEngine, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
    batch = [dict(r) for r in rows]
    if not batch:
        return
    columns = list(batch[0])
    statement = text(
        f'INSERT INTO "{table}" ({", ".join(columns)}) '
        f"VALUES ({', '.join(':' + c for c in columns)})"
    )
    async with engine.begin() as conn:
        await conn.execute(statement, batch)


async def insert_scenarios(engine: AsyncEngine, scenario_ids: Iterable[str]) -> None:
    ids = list(scenario_ids)
    await _insert(
        engine,
        "value_pairs",
        (
            {
                "pair_id": f"p-{s}",
                "value1": "honesty",
                "value2": "kindness",
                "taxonomy_version": "t",
                "seed": 0,
                "run_index": i,
            }
            for i, s in enumerate(ids)
        ),
    )
    await _insert(
        engine,
        "scenarios",
        (
            {
                "scenario_id": s,
                "pair_id": f"p-{s}",
                "variant": "neutral",
                "generator": "writer",
                "prompt_version": "v",
                "query": f"query {s}",
            }
            for s in ids
        ),
    )
    spectrum = '[{"position": "neutral", "response": "x"}]'
    await _insert(
        engine,
        "spectra",
        (
            {
                "spectrum_id": f"sp-{s}",
                "pair_id": f"p-{s}",
                "model_key": "writer",
                "prompt_version": "v",
                "value1_spectrum": spectrum,
                "value2_spectrum": spectrum,
            }
            for s in ids
        ),
    )


async def insert_models(engine: AsyncEngine, families: Mapping[str, str]) -> None:
    await _insert(engine, "models", ({"model_key": k, "family": f} for k, f in families.items()))


async def insert_responses(engine: AsyncEngine, answers: Iterable[tuple[str, str]]) -> None:
    await _insert(
        engine,
        "responses",
        (
            {
                "response_id": response_id(s, m),
                "scenario_id": s,
                "model_key": m,
                "text": "answer",
                "params": "{}",
                "llm_call_hash": "h",
            }
            for s, m in answers
        ),
    )


async def insert_positions(
    engine: AsyncEngine, positions: Mapping[str, Mapping[str, tuple[int, int]]]
) -> None:
    """Classifications (and the responses they classify) from scenario -> model -> positions."""
    await insert_responses(engine, ((s, m) for s, by in positions.items() for m in by))
    await _insert(
        engine,
        "classifications",
        (
            {
                "response_id": response_id(s, m),
                "scenario_id": s,
                "spectrum_id": f"sp-{s}",
                "classifier": "writer",
                "value1_position": p1,
                "value1_confidence": 1.0,
                "value1_reasoning": "",
                "value2_position": p2,
                "value2_confidence": 1.0,
                "value2_reasoning": "",
            }
            for s, by in positions.items()
            for m, (p1, p2) in by.items()
        ),
    )


async def insert_disagreement(
    engine: AsyncEngine, rows: Iterable[tuple[str, str, float]], threshold: float = 1.5
) -> None:
    await _insert(
        engine,
        "disagreement",
        (
            {
                "scenario_id": s,
                "model_set": name,
                "members": 2,
                "value1_std": d,
                "value2_std": 0.0,
                "disagreement": d,
                "high": d >= threshold,
            }
            for s, name, d in rows
        ),
    )


def verdict_id(scenario: str, model: str, judge: str) -> str:
    return f"v-{scenario}-{model}-{judge}"[:32]


async def insert_verdicts(
    engine: AsyncEngine,
    decisions: Iterable[tuple[str, str, str, str]],
    spec: tuple[str, str] = ("rules", "1"),
) -> None:
    """(scenario, model, judge, decision) rows."""
    await _insert(
        engine,
        "verdicts",
        (
            {
                "verdict_id": verdict_id(s, m, j),
                "response_id": response_id(s, m),
                "scenario_id": s,
                "judge": j,
                "spec_id": spec[0],
                "spec_version": spec[1],
                "decision": d,
                "reasoning": "",
            }
            for s, m, j, d in decisions
        ),
    )


async def insert_citations(engine: AsyncEngine, rows: Iterable[tuple[str, str, int]]) -> None:
    await _insert(
        engine, "verdict_citations", ({"verdict_id": v, "anchor": a, "rank": r} for v, a, r in rows)
    )


async def query(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def insert_selection(engine: AsyncEngine, name: str, scenario_ids: Iterable[str]) -> None:
    members = list(scenario_ids)
    await _insert(
        engine,
        "selections",
        [
            {
                "name": name,
                "method": "exact",
                "delta": 0.4,
                "seed": 0,
                "embedding_key": "e",
                "candidates": len(members),
                "selected": len(members),
            }
        ],
    )
    await _insert(
        engine,
        "selection_members",
        ({"selection": name, "scenario_id": s, "rank": i} for i, s in enumerate(members)),
    )


async def insert_refusal_types(
    engine: AsyncEngine, rows: Iterable[tuple[str, str, str]], refusals: Iterable[str]
) -> None:
    """(scenario, model, refusal type) rows; `refusals` names the types that count as refusals."""
    refusing = set(refusals)
    await _insert(
        engine,
        "refusal_types",
        (
            {
                "response_id": response_id(s, m),
                "scenario_id": s,
                "model_key": m,
                "labeller": "writer",
                "prompt_version": "v",
                "refusal_type": kind,
                "refusal": kind in refusing,
                "reasoning": "",
            }
            for s, m, kind in rows
        ),
    )


async def insert_topics(
    engine: AsyncEngine, topics: Mapping[str, Iterable[str]], columns: Iterable[str]
) -> None:
    """scenario -> the topic columns that are true; `columns` are every topic column."""
    every = list(columns)
    await _insert(
        engine,
        "topic_labels",
        (
            {"scenario_id": s, "labeller": "writer", "prompt_version": "v"}
            | {c: c in set(present) for c in every}
            for s, present in topics.items()
        ),
    )
