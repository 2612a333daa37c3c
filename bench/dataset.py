"""Importing the paper's released schema at scale: a synthetic parquet file of N rows x 12 models.

Run with `python -m bench.dataset` (see --help). It writes one `default`-config split of the
release (rank, query_generator, value1, value2, nudge_direction, query, entry_idx, a response
and two positions per model) with random answers, starts a private PostgreSQL cluster in a
temporary folder, then times `specstress import` of the file into the empty database (one
transaction: facts through COPY and staging tables, then D for every scenario and model set),
a second import of the same file (idempotent: nothing new), and an `hf` export of the result.
It prints the figures and appends one JSON line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from bench.database import private_database
from bench.paper_shape import FAMILIES, MODELS, SETS
from bench.recording import header, measure_and_record
from specstress.config import Config
from specstress.dataset import ExportFormat, export_dataset, import_dataset, scenario_schema

GENERATORS = ["claude_opus_4", "claude_3_7_sonnet", "o3"]
ANSWER_CHARS = 1500


def write_release(path: Path, rows: int, seed: int) -> None:
    """`rows` scenarios: rows/3 value pairs x 3 nudge directions, 12 answers each."""
    rng = np.random.default_rng(seed)
    filler = "lorem ipsum dolor sit amet " * (ANSWER_CHARS // 27 + 1)
    schema = scenario_schema(MODELS)
    chunk = 5000
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            index = np.arange(start, start + n)
            pair = index // 3
            columns: dict[str, Any] = {
                "rank": index + 1,
                "query_generator": [GENERATORS[p % 3] for p in pair],
                "value1": [f"value {p * 2}" for p in pair],
                "value2": [f"value {p * 2 + 1}" for p in pair],
                "nudge_direction": [("neutral", "value1", "value2")[i % 3] for i in index],
                "query": [f"scenario {i}: what should I do?" for i in index],
                "entry_idx": index,
            }
            for m in MODELS:
                columns[f"response_{m}"] = [f"{m} on {i}: {filler[:ANSWER_CHARS]}" for i in index]
                for v in ("value1", "value2"):
                    columns[f"{m}_{v}_position"] = rng.integers(0, 7, n)
            writer.write_table(pa.table(columns, schema=schema))


def bench_config(database_url: str) -> Config:
    return Config.model_validate(
        {
            "database_url": database_url,
            "models": [
                {"key": k, "family": f, "base_url": "http://127.0.0.1:9/v1", "model_id": k}
                for k, f in FAMILIES.items()
            ],
            "roles": {
                "generators": [{"model": g} for g in GENERATORS],
                "targets": MODELS,
                "spectrum": "claude_opus_4",
                "classifier": "claude_sonnet_4",
                "judges": ["claude_sonnet_4", "o3", "gemini_2_5_pro"],
            },
            "model_sets": SETS,
        }
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with private_database("dataset") as scratch:
        folder, database_url = scratch.folder, scratch.database_url
        source = folder / "all_models-00000-of-00001.parquet"
        started = time.perf_counter()
        write_release(source, args.rows, args.seed)
        write_seconds = time.perf_counter() - started
        file_mb = round(source.stat().st_size / 1e6, 1)
        config = bench_config(database_url)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        first = await import_dataset(config, source)
        import_seconds = time.perf_counter() - started
        started = time.perf_counter()
        second = await import_dataset(config, source)
        reimport_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await export_dataset(config, folder / "export", ExportFormat.hf)
        export_seconds = time.perf_counter() - started
        load_after = os.getloadavg()[0]
    return {
        **header(
            "dataset",
            load_average_1min=[round(load_before, 2), round(load_after, 2)],
        ),
        "parameters": {
            "rows": args.rows,
            "models": len(MODELS),
            "model_sets": len(SETS),
            "answer_chars": ANSWER_CHARS,
            "seed": args.seed,
        },
        "file_mb": file_mb,
        "write_seconds": round(write_seconds, 2),
        "import_seconds": round(import_seconds, 2),
        "rows_per_second": round(args.rows / import_seconds),
        "inserted": first.inserted,
        "scenarios_scored": first.scenarios_scored,
        "reimport_seconds": round(reimport_seconds, 2),
        "reimport_inserted": sum(second.inserted.values()),
        "export_hf_seconds": round(export_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    measure_and_record(
        parser,
        lambda args: asyncio.run(run(args)),
        lambda figures: Console().print_json(json.dumps(figures)),
    )


if __name__ == "__main__":
    main()
