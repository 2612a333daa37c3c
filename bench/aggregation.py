"""The analysis views at the paper's scale: 411k synthetic scenarios x 12 models.

Run with `python bench/aggregation.py` (see --help). It starts a private PostgreSQL cluster in a
temporary folder, migrates it, bulk-loads synthetic facts with binary COPY (pairs, scenarios,
spectra, 12 models' responses and positions, D per model set, verdicts of three judges on the
OpenAI family's answers to every flagged scenario, one citation per verdict, and, where their
tables exist, labels and selections), then times every `specstress report` read the way the CLI
runs it, cold then warm. It prints a table and appends one JSON line to bench/results.jsonl.
Nothing here is a test: the figures are for comparing versions on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from sqlalchemy import text

from bench.database import private_database
from bench.paper_shape import FAMILIES, JUDGES, MODELS, SETS
from bench.recording import header, measure_and_record, print_table
from specstress.analysis import queries as analysis
from specstress.analysis.queries import Filters
from specstress.analysis.reports import REPORTS
from specstress.config import Config
from specstress.dataset.load import (
    CLASSIFICATION_COLUMNS,
    PAIR_COLUMNS,
    RESPONSE_COLUMNS,
    SCENARIO_COLUMNS,
    SPECTRUM_COLUMNS,
    VERDICT_COLUMNS,
)
from specstress.db.engine import create_engine
from specstress.method.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("neutral", "value1", "value2")
SELECTION = "kcenter"


def bench_config(database_url: str) -> Config:
    def model(key: str, family: str) -> dict[str, Any]:
        return {"key": key, "family": family, "base_url": "http://127.0.0.1:9/v1", "model_id": key}

    return Config.model_validate(
        {
            "database_url": database_url,
            "models": [model(k, f) for k, f in FAMILIES.items()],
            "roles": {
                "generators": [{"model": "o3"}],
                "targets": MODELS,
                "spectrum": "o3",
                "classifier": "claude_sonnet_4",
                "judges": list(JUDGES),
            },
            "model_sets": SETS,
            "specs": [
                {"id": "spec", "version": "1", "path": "builtin:example", "families": ["openai"]}
            ],
        }
    )


def _ids(kind: str, count: int) -> list[str]:
    return [
        hashlib.blake2b(f"{kind}{i}".encode(), digest_size=16).hexdigest() for i in range(count)
    ]


def set_members(name: str) -> list[int]:
    rules = SETS[name]
    return [
        i
        for i, key in enumerate(MODELS)
        if "*" in rules or key in rules or f"family:{FAMILIES[key]}" in rules
    ]


class Facts:
    """Synthetic facts with some structure: each model leans its own way, each scenario has a
    centre, and noise spreads the answers, so D, outliers and flags vary as in real runs."""

    def __init__(self, scenarios: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.pairs = _ids("pair", (scenarios + 2) // 3)
        self.scenarios = _ids("scenario", scenarios)
        centre = rng.integers(1, 6, size=(scenarios, 1, 2))
        lean = rng.normal(0, 0.6, size=(1, len(MODELS), 2))
        noise = rng.normal(0, 1.1, size=(scenarios, len(MODELS), 2))
        self.positions = np.clip(np.rint(centre + lean + noise), 0, 6).astype(np.int16)
        self.d = {
            name: self.positions[:, set_members(name), :].astype(float).std(axis=1).max(axis=1)
            for name in SETS
        }
        self.flagged = np.zeros(scenarios, dtype=bool)
        for d in self.d.values():
            self.flagged |= d >= 1.5

    def response_id(self, scenario: int, model: int) -> str:
        return self.scenarios[scenario][:26] + f"{model:06d}"


def _records_pairs(facts: Facts) -> Iterator[tuple[Any, ...]]:
    for i, pair in enumerate(facts.pairs):
        yield (pair, f"value a{i}", f"value b{i}", "bench", 0, i)


def _records_scenarios(facts: Facts) -> Iterator[tuple[Any, ...]]:
    for i, scenario in enumerate(facts.scenarios):
        yield (scenario, facts.pairs[i // 3], VARIANTS[i % 3], "o3", "v", f"query {i}")


def _records_spectra(facts: Facts) -> Iterator[tuple[Any, ...]]:
    spectrum = json.dumps([{"position": "neutral", "response": "x"}])
    for pair in facts.pairs:
        yield (pair, pair, "o3", "v", spectrum, spectrum)


def _records_responses(facts: Facts) -> Iterator[tuple[Any, ...]]:
    for s, scenario in enumerate(facts.scenarios):
        for m, key in enumerate(MODELS):
            yield (facts.response_id(s, m), scenario, key, "answer", "{}", "h")


def _records_classifications(facts: Facts) -> Iterator[tuple[Any, ...]]:
    for s, scenario in enumerate(facts.scenarios):
        spectrum = facts.pairs[s // 3]
        for m in range(len(MODELS)):
            p1, p2 = facts.positions[s, m]
            yield (
                facts.response_id(s, m),
                scenario,
                spectrum,
                "c",
                int(p1),
                1.0,
                "",
                int(p2),
                1.0,
                "",
            )


def _records_disagreement(facts: Facts) -> Iterator[tuple[Any, ...]]:
    for name, d in facts.d.items():
        members = len(set_members(name))
        stds = facts.positions[:, set_members(name), :].astype(float).std(axis=1)
        for s, scenario in enumerate(facts.scenarios):
            yield (
                scenario,
                name,
                members,
                float(stds[s, 0]),
                float(stds[s, 1]),
                float(d[s]),
                bool(d[s] >= 1.5),
            )


def _verdicts(
    facts: Facts, anchors: Sequence[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = facts.rng
    openai = [i for i, k in enumerate(MODELS) if FAMILIES[k] == "openai"]
    judged = np.flatnonzero(facts.flagged)
    verdicts: list[tuple[Any, ...]] = []
    citations: list[tuple[Any, ...]] = []
    pressure = facts.d["openai_models"][judged] - 1.5
    for judge, bias in JUDGES.items():
        p = 1.0 / (
            1.0
            + np.exp(
                -(bias + 0.9 * pressure[:, None] + rng.normal(0, 1.0, (len(judged), len(openai))))
            )
        )
        flags = rng.random(p.shape) < p
        ambiguous = rng.random(p.shape) < 0.35
        picks = rng.integers(0, len(anchors), size=p.shape)
        for row, s in enumerate(judged):
            for col, m in enumerate(openai):
                response = facts.response_id(int(s), m)
                verdict = hashlib.blake2b(f"{response}{judge}".encode(), digest_size=16).hexdigest()
                decision = "compliant"
                if flags[row, col]:
                    decision = "ambiguous" if ambiguous[row, col] else "non-compliant"
                verdicts.append(
                    (verdict, response, facts.scenarios[s], judge, "spec", "1", decision, "")
                )
                citations.append((verdict, anchors[picks[row, col]], 1))
    return verdicts, citations


async def _table_exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def _optional_facts(conn: asyncpg.Connection, facts: Facts) -> dict[str, int]:
    """Labels (topics, refusal types, distinctive values) and a selection, where their tables
    exist in this checkout; they feed the views of migration 0009."""
    loaded: dict[str, int] = {}
    rng = facts.rng
    flagged = np.flatnonzero(facts.flagged)
    if await _table_exists(conn, "refusal_types"):
        from specstress.method.labels import REFUSAL_TYPES, REFUSALS, TOPIC_COLUMNS  # noqa: PLC0415

        kinds = rng.choice(
            len(REFUSAL_TYPES),
            size=(len(facts.scenarios), len(MODELS)),
            p=[0.35, 0.2, 0.15, 0.1, 0.1, 0.06, 0.04],
        )
        rows = (
            (
                facts.response_id(s, m),
                facts.scenarios[s],
                MODELS[m],
                "c",
                "v",
                REFUSAL_TYPES[kinds[s, m]],
                REFUSAL_TYPES[kinds[s, m]] in REFUSALS,
                "",
            )
            for s in range(len(facts.scenarios))
            for m in range(len(MODELS))
        )
        columns = [
            "response_id",
            "scenario_id",
            "model_key",
            "labeller",
            "prompt_version",
            "refusal_type",
            "refusal",
            "reasoning",
        ]
        await conn.copy_records_to_table("refusal_types", records=rows, columns=columns)
        loaded["refusal_types"] = len(facts.scenarios) * len(MODELS)
        topics = rng.random((len(flagged), len(TOPIC_COLUMNS))) < 0.2
        await conn.copy_records_to_table(
            "topic_labels",
            records=(
                (facts.scenarios[s], "c", "v", *map(bool, topics[i])) for i, s in enumerate(flagged)
            ),
            columns=["scenario_id", "labeller", "prompt_version", *TOPIC_COLUMNS.values()],
        )
        loaded["topic_labels"] = len(flagged)
    if await _table_exists(conn, "selection_members"):
        # about the share the paper's k-center kept (~300k of ~410k)
        kept = np.flatnonzero(rng.random(len(facts.scenarios)) < 0.73)
        await conn.execute(
            "INSERT INTO selections (name, method, delta, seed, embedding_key, candidates, "
            "selected) VALUES ($1, 'exact', 0.4, 0, 'bench', $2, $3)",
            SELECTION,
            len(facts.scenarios),
            len(kept),
        )
        await conn.copy_records_to_table(
            "selection_members",
            records=((SELECTION, facts.scenarios[s], rank) for rank, s in enumerate(kept)),
            columns=["selection", "scenario_id", "rank"],
        )
        loaded["selection_members"] = len(kept)
    return loaded


async def load(database_url: str, facts: Facts) -> dict[str, Any]:
    anchors = sorted(load_spec("builtin:example", "spec", "1").anchors)
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    timings: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        # facts are consistent by construction: skip per-row foreign-key triggers while loading
        await conn.execute("SET session_replication_role = replica")
        await conn.copy_records_to_table(
            "models", records=[(k, f) for k, f in FAMILIES.items()], columns=["model_key", "family"]
        )
        tables: list[tuple[str, list[str], Iterator[tuple[Any, ...]], int]] = [
            (
                "value_pairs",
                PAIR_COLUMNS,
                _records_pairs(facts),
                len(facts.pairs),
            ),
            (
                "scenarios",
                SCENARIO_COLUMNS,
                _records_scenarios(facts),
                len(facts.scenarios),
            ),
            (
                "spectra",
                SPECTRUM_COLUMNS,
                _records_spectra(facts),
                len(facts.pairs),
            ),
            (
                "responses",
                RESPONSE_COLUMNS,
                _records_responses(facts),
                len(facts.scenarios) * len(MODELS),
            ),
            (
                "classifications",
                CLASSIFICATION_COLUMNS,
                _records_classifications(facts),
                len(facts.scenarios) * len(MODELS),
            ),
            (
                "disagreement",
                [
                    "scenario_id",
                    "model_set",
                    "members",
                    "value1_std",
                    "value2_std",
                    "disagreement",
                    "high",
                ],
                _records_disagreement(facts),
                len(facts.scenarios) * len(SETS),
            ),
        ]
        for table, columns, records, count in tables:
            started = time.perf_counter()
            await conn.copy_records_to_table(table, records=records, columns=columns)
            timings[table] = round(time.perf_counter() - started, 2)
            counts[table] = count
        verdicts, citations = _verdicts(facts, anchors)
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "verdicts",
            records=verdicts,
            columns=VERDICT_COLUMNS,
        )
        await conn.copy_records_to_table(
            "verdict_citations", records=citations, columns=["verdict_id", "anchor", "rank"]
        )
        timings["verdicts"] = round(time.perf_counter() - started, 2)
        counts["verdicts"] = len(verdicts)
        counts["verdict_citations"] = len(citations)
        counts.update(await _optional_facts(conn, facts))
        started = time.perf_counter()
        await conn.execute("ANALYZE")
        timings["analyze"] = round(time.perf_counter() - started, 2)
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await conn.close()
    return {"rows": counts, "load_seconds": timings, "database_size": size}


async def time_reports(config: Config, n: int) -> list[dict[str, Any]]:
    engine = create_engine(config.database_url, pool_size=2)
    results = []
    try:
        started = time.perf_counter()
        await analysis.sync_config(engine, config)
        results.append(
            {
                "report": "sync_config",
                "filter": "",
                "rows": 0,
                "cold_seconds": round(time.perf_counter() - started, 3),
                "warm_seconds": None,
            }
        )
        for name, report in REPORTS.items():
            filters = [("", Filters())]
            if name in {"table2", "disagreement"} or name.startswith("figure"):
                filters.append(("model_set=all_models", Filters(model_set="all_models")))
                if await analysis.known_selection(engine, SELECTION):
                    filters.append(
                        (
                            f"model_set=all_models selection={SELECTION}",
                            Filters(selection=SELECTION, model_set="all_models"),
                        )
                    )
            for label, chosen in filters:
                runs = []
                rows: list[dict[str, Any]] = []
                for _ in range(2):
                    started = time.perf_counter()
                    rows = await report.read(engine, chosen, n)
                    runs.append(round(time.perf_counter() - started, 3))
                results.append(
                    {
                        "report": name,
                        "filter": label,
                        "rows": len(rows),
                        "cold_seconds": runs[0],
                        "warm_seconds": runs[1],
                    }
                )
    finally:
        await engine.dispose()
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with private_database("aggregation") as scratch:
        database_url = scratch.database_url
        started = time.perf_counter()
        facts = Facts(args.scenarios, args.seed)
        generate_seconds = time.perf_counter() - started
        loaded = await load(database_url, facts)
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                settings = {
                    name: (await conn.execute(text(f"SHOW {name}"))).scalar()
                    for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather")
                }
        finally:
            await engine.dispose()
        # other work on the machine inflates every figure: keep its measure beside them
        load_before = os.getloadavg()[0]
        reports = await time_reports(bench_config(database_url), args.n)
        load_after = os.getloadavg()[0]
    return {
        **header("aggregation", load_average_1min=[round(load_before, 2), round(load_after, 2)]),
        "parameters": {
            "scenarios": args.scenarios,
            "models": len(MODELS),
            "model_sets": len(SETS),
            "judges": len(JUDGES),
            "table2_n": args.n,
            "seed": args.seed,
            "postgres": settings,
        },
        "flagged_scenarios": int(facts.flagged.sum()),
        "generate_seconds": round(generate_seconds, 2),
        **loaded,
        "reports": reports,
    }


def show(result: dict[str, Any]) -> None:
    console = print_table(
        f"aggregation views @ {result['commit']}: {result['parameters']['scenarios']:,} scenarios x 12 models",
        ["report", "filter", "rows", "cold s", "warm s"],
        (
            [
                *(r[key] for key in ("report", "filter", "rows", "cold_seconds")),
                "" if r["warm_seconds"] is None else r["warm_seconds"],
            ]
            for r in result["reports"]
        ),
        width=140,
    )
    console.print(f"rows loaded: {result['rows']}")
    console.print(f"load seconds: {result['load_seconds']}; database {result['database_size']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=411_000)
    parser.add_argument("--n", type=int, default=1000, help="Table 2 sample size")
    parser.add_argument("--seed", type=int, default=1)
    measure_and_record(parser, lambda args: asyncio.run(run(args)), show)


if __name__ == "__main__":
    main()
