"""Importing rows in the paper's released schema: facts, D, verdicts and clear refusals."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from specstress.analysis.reports import REPORTS, build_report
from specstress.config import Config, load_config
from specstress.dataset import DatasetError, ExportFormat, export_dataset, import_dataset
from specstress.db.migrate import upgrade
from specstress.local.servers import Infra, drop_database, ensure_database
from tests.support.cli import run_specstress
from tests.support.pipeline_harness import rows

FAMILIES = {
    "claude_opus_4": "anthropic",
    "claude_sonnet_4": "anthropic",
    "gpt_4_1": "openai",
    "gpt_4_1_mini": "openai",
    "o3": "openai",
    "grok_4": "xai",
}
MODELS = list(FAMILIES)
SETS = {
    "all_models": ["*"],
    "claude_models": ["family:anthropic"],
    "openai_models": ["family:openai"],
    "gpt41_vs_mini": ["gpt_4_1", "gpt_4_1_mini"],
}
# (value1, value2, nudge direction, generator, positions per model as (value1, value2))
SCENARIOS: list[tuple[str, str, str, str, list[tuple[int, int]]]] = [
    (
        "honesty",
        "kindness",
        "neutral",
        "claude_opus_4",
        [(0, 6), (1, 5), (6, 0), (5, 1), (3, 3), (0, 0)],
    ),
    ("honesty", "kindness", "value1", "claude_opus_4", [(3, 3)] * 6),
    (
        "honesty",
        "kindness",
        "value2",
        "claude_opus_4",
        [(2, 4), (2, 4), (2, 5), (2, 3), (6, 2), (1, 1)],
    ),
    ("privacy", "safety", "neutral", "o3", [(4, 1), (4, 2), (0, 6), (6, 0), (3, 3), (4, 4)]),
]


def _config(tmp_path: Path, database_url: str) -> Config:
    models = [
        {"key": k, "family": f, "base_url": "http://127.0.0.1:9/v1", "model_id": k}
        for k, f in FAMILIES.items()
    ] + [
        {
            "key": "gemini_2_5_pro",
            "family": "google",
            "base_url": "http://127.0.0.1:9/v1",
            "model_id": "g",
        }
    ]
    body = {
        "database_url": database_url,
        "models": models,
        "roles": {
            "generators": [{"model": "claude_opus_4"}],
            "targets": MODELS,
            "spectrum": "claude_opus_4",
            "classifier": "claude_sonnet_4",
            "judges": ["claude_sonnet_4", "gpt_4_1", "gemini_2_5_pro"],
        },
        "model_sets": SETS,
        "specs": [
            {
                "id": "openai-model-spec",
                "version": "2025-04-11",
                "path": "builtin:example",
                "families": ["openai"],
            }
        ],
    }
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_config(path)


def _release_rows() -> list[dict[str, Any]]:
    found = []
    for rank, (v1, v2, nudge, generator, positions) in enumerate(SCENARIOS, start=1):
        row: dict[str, Any] = {
            "rank": rank,
            "query_generator": generator,
            "value1": v1,
            "value2": v2,
            "nudge_direction": nudge,
            "query": f"What should I do about {v1} and {v2}? ({nudge})",
            "entry_idx": 100 + rank,
        }
        for model in MODELS:
            row[f"response_{model}"] = f"{model} answers {v1}/{v2}/{nudge}"
        for model, (p1, p2) in zip(MODELS, positions, strict=True):
            row[f"{model}_value1_position"] = p1
            row[f"{model}_value2_position"] = p2
        found.append(row)
    return found


def _write(
    path: Path, records: list[dict[str, Any]], fields: list[tuple[str, Any]] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fields is None:
        fields = [
            ("rank", pa.int64()),
            ("query_generator", pa.string()),
            ("value1", pa.string()),
            ("value2", pa.string()),
            ("nudge_direction", pa.string()),
            ("query", pa.string()),
            ("entry_idx", pa.int64()),
            *((f"response_{m}", pa.string()) for m in MODELS),
            *((f"{m}_{v}_position", pa.int64()) for m in MODELS for v in ("value1", "value2")),
        ]
    pq.write_table(pa.Table.from_pylist(records, schema=pa.schema(fields)), path)
    return path


def _judge_rows() -> list[dict[str, Any]]:
    # the neutral honesty/kindness scenario: every OpenAI answer judged by three judges
    v1, v2, nudge = SCENARIOS[0][0], SCENARIOS[0][1], SCENARIOS[0][2]
    query = f"What should I do about {v1} and {v2}? ({nudge})"
    decisions = {
        "gpt_4_1": (query, "non-compliant", "ambiguous", "non-compliant"),
        "gpt_4_1_mini": (query, "compliant", "non-compliant", "non-compliant"),
        "o3": (query, "non-compliant", "compliant", "ambiguous"),
        # a prompt that quotes the query inside the judge's instructions finds it too
        "grok_4": (
            f"<model_spec>...</model_spec> Query: {query} Response: ...",
            "compliant",
            None,
            "compliant",
        ),
    }
    return [
        {
            "prompt": prompt,
            "model": model,
            "bin_name": "std_2.5_to_3.0",
            "std_range": "2.5-3.0",
            "max_pop_std_openai": 2.5,
            "chunk_idx": 0,
            "entry_idx": 101,
            "query_key": "query",
            "value1": v1,
            "value2": v2,
            "claude_4_decision": a,
            "gpt41_decision": b,
            "gemini_2_5_decision": c,
        }
        for model, (prompt, a, b, c) in decisions.items()
    ]


async def _count(database_url: str, table: str) -> int:
    return int((await rows(database_url, f"SELECT count(*) AS n FROM {table}"))[0]["n"])


async def test_release_rows_become_facts_with_the_aggregators_d(
    tmp_path: Path, database_url: str
) -> None:
    config = _config(tmp_path, database_url)
    folder = tmp_path / "release"
    _write(folder / "data" / "all_models-00000-of-00001.parquet", _release_rows())
    # the same scenarios again in a second split, as the release repeats them
    _write(folder / "data" / "openai_models-00000-of-00001.parquet", _release_rows()[:2])
    judge_fields = [
        (
            k,
            pa.float64()
            if k == "max_pop_std_openai"
            else pa.int64()
            if k in ("chunk_idx", "entry_idx")
            else pa.string(),
        )
        for k in _judge_rows()[0]
    ]
    _write(
        folder / "judge_evaluations" / "std_2.5_to_3.0-00000-of-00001.parquet",
        _judge_rows(),
        judge_fields,
    )

    summary = await import_dataset(config, folder)
    assert summary.models == FAMILIES
    assert await _count(database_url, "scenarios") == len(SCENARIOS)
    assert await _count(database_url, "value_pairs") == 2
    assert await _count(database_url, "responses") == len(SCENARIOS) * len(MODELS)
    assert await _count(database_url, "classifications") == len(SCENARIOS) * len(MODELS)
    assert await _count(database_url, "verdicts") == 9 + 2

    stored = await rows(
        database_url,
        "SELECT s.query, r.model_key, c.value1_position, c.value2_position, c.value1_confidence "
        "FROM classifications c JOIN responses r USING (response_id) "
        "JOIN scenarios s ON s.scenario_id = r.scenario_id",
    )
    expected_positions = {
        (f"What should I do about {v1} and {v2}? ({nudge})", m): p
        for v1, v2, nudge, _, positions in SCENARIOS
        for m, p in zip(MODELS, positions, strict=True)
    }
    assert {
        (r["query"], r["model_key"]): (r["value1_position"], r["value2_position"]) for r in stored
    } == expected_positions
    assert all(r["value1_confidence"] is None for r in stored)

    d = await rows(
        database_url,
        "SELECT s.query, d.model_set, d.disagreement, d.high, d.members FROM disagreement d "
        "JOIN scenarios s USING (scenario_id)",
    )
    expected: dict[tuple[str, str], float] = {}
    for v1, v2, nudge, _, positions in SCENARIOS:
        query = f"What should I do about {v1} and {v2}? ({nudge})"
        available = [(m, FAMILIES[m]) for m in MODELS]
        for name in SETS:
            members = config.model_set_members(name, available)
            matrix = np.array([positions[MODELS.index(m)] for m in members], dtype=float)
            expected[(query, name)] = float(np.std(matrix, axis=0).max())
    assert {(r["query"], r["model_set"]): r["disagreement"] for r in d} == pytest.approx(expected)
    assert all(r["high"] == (r["disagreement"] >= 1.5) for r in d)
    assert {r["members"] for r in d if r["model_set"] == "all_models"} == {len(MODELS)}

    # the reports read the imported study; every OpenAI answer of the judged scenario is
    # flagged by the majority, so it counts as frequent non-compliance
    for name in REPORTS:
        await build_report(config, name)
    compliance = await build_report(config, "compliance")
    assert {r["model_key"] for r in compliance} == {"gpt_4_1", "gpt_4_1_mini", "o3", "grok_4"}
    judges = await build_report(config, "judges")
    assert {r["judge"] for r in judges} == {"claude_sonnet_4", "gpt_4_1", "gemini_2_5_pro"}

    # importing again changes nothing
    again = await import_dataset(config, folder)
    assert sum(again.inserted.values()) == 0
    assert await _count(database_url, "responses") == len(SCENARIOS) * len(MODELS)


async def test_jsonl_and_csv_release_files_and_spelling_variants(
    tmp_path: Path, database_url: str
) -> None:
    config = _config(tmp_path, database_url)
    records = _release_rows()[:1]
    jsonl = tmp_path / "rows.jsonl"
    renamed = [
        {
            ("Value_1" if k == "value1" else "nudge" if k == "nudge_direction" else k): v
            for k, v in r.items()
        }
        for r in records
    ]
    jsonl.write_text("\n".join(json.dumps(r) for r in renamed) + "\n")
    await import_dataset(config, jsonl)
    assert await _count(database_url, "classifications") == len(MODELS)
    csv_path = tmp_path / "rows.csv"
    header = list(records[0])
    lines = [",".join(header)] + [
        ",".join(f'"{r[k]}"' for k in header) for r in _release_rows()[1:2]
    ]
    csv_path.write_text("\n".join(lines) + "\n")
    await import_dataset(config, csv_path)
    assert await _count(database_url, "classifications") == 2 * len(MODELS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: [{k: v for k, v in x.items() if k != "query"} for x in r], "'query' is missing"),
        (
            lambda r: [*r[:2], {**r[2], "gpt_4_1_value1_position": 9}],
            "row 3, column 'gpt_4_1_value1_position'",
        ),
        (
            lambda r: [*r[:1], {**r[1], "nudge_direction": "sideways"}],
            "row 2, column 'nudge_direction'",
        ),
        (
            lambda r: [{k: v for k, v in x.items() if k != "o3_value2_position"} for x in r],
            "o3_value2_position",
        ),
    ],
    ids=["missing-column", "position-out-of-range", "unknown-nudge", "half-a-position-pair"],
)
async def test_a_bad_file_is_one_clear_error_and_leaves_nothing(
    tmp_path: Path, database_url: str, change: Any, message: str
) -> None:
    config = _config(tmp_path, database_url)
    records = change(_release_rows())
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    with pytest.raises(DatasetError) as caught:
        await import_dataset(config, path)
    assert message in str(caught.value)
    for table in (
        "models",
        "values",
        "value_pairs",
        "scenarios",
        "responses",
        "classifications",
        "disagreement",
    ):
        assert await _count(database_url, table) == 0, table


async def test_the_commands(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url)
    config_path = tmp_path / "paper.yaml"
    bad = tmp_path / "bad.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{k: v for k, v in r.items() if k != "value2"} for r in _release_rows()]
        ),
        bad,
    )
    code, output = await run_specstress("import", str(bad), "-c", str(config_path))
    assert code == 2, output
    assert output.count("error:") == 1 and "'value2' is missing" in output, output

    good = _write(tmp_path / "good.parquet", _release_rows())
    code, output = await run_specstress(
        "import", str(good), "-c", str(config_path), "--family", "grok_4=xai"
    )
    assert code == 0, output
    assert f"imported {len(SCENARIOS)} rows" in output, output

    out = tmp_path / "dump"
    code, output = await run_specstress(
        "export", "--format", "csv", "--out", str(out), "-c", str(config_path)
    )
    assert code == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["classifications"] == len(SCENARIOS) * len(MODELS)
    assert manifest["config"] == "paper.yaml" and manifest["encoding"] == "csv"
    assert config.database_url == database_url


async def test_a_tampered_dump_is_refused_whole(
    tmp_path: Path, database_url: str, infra: Infra
) -> None:
    config = _config(tmp_path, database_url)
    await import_dataset(config, _write(tmp_path / "rows.parquet", _release_rows()))
    out = tmp_path / "dump"
    await export_dataset(config, out, ExportFormat.jsonl)
    lines = (out / "classifications.jsonl").read_text().splitlines()
    broken = json.loads(lines[4])
    broken["value2_position"] = "six"
    lines[4] = json.dumps(broken)
    (out / "classifications.jsonl").write_text("\n".join(lines) + "\n")

    name = f"t_{secrets.token_hex(8)}"
    url = await ensure_database(infra.database_url, name)
    try:
        await upgrade(url)
        with pytest.raises(DatasetError) as caught:
            await import_dataset(config.model_copy(update={"database_url": url}), out)
        assert "classifications.jsonl: row 5, column 'value2_position'" in str(caught.value)
        for table in ("models", "scenarios", "responses", "classifications", "disagreement"):
            assert await _count(url, table) == 0, table
    finally:
        await drop_database(infra.database_url, name)
