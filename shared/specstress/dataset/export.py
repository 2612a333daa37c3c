"""`specstress export`: the study as the paper's release (parquet), or as our own lossless dump.

`hf` writes the release's three configs (README.md beside this file maps every column) with a
dataset card, and beside them, under `specstress/`, the lossless JSON Lines dump the release's
schema has no room for (labels, reasoning, citations, drops, costs), so importing the folder
gives back every report. `jsonl` and `csv` write the lossless dump alone. Every format streams:
rows are read from the database in partitions and written as they come.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from specstress.analysis.queries import ALL_SCENARIOS, known_selection
from specstress.api import database
from specstress.config import Config
from specstress.dataset import release
from specstress.dataset.tables import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLES,
    DatasetError,
    encode_csv,
    encode_json,
    file_columns,
)

__all__ = ["ExportFormat", "export_dataset", "scenario_schema"]

PARTITION = 2000
SHARD = "-00000-of-00001.parquet"
LOSSLESS_FOLDER = "specstress"
HF_FORMAT = f"{FORMAT_NAME}-hf"


class ExportFormat(StrEnum):
    hf = "hf"
    jsonl = "jsonl"
    csv = "csv"


async def export_dataset(
    config: Config,
    out: Path,
    output: ExportFormat,
    *,
    model_set: str | None = None,
    selection: str = ALL_SCENARIOS,
    config_name: str = "",
) -> dict[str, Any]:
    """Write the export into folder `out`; returns its manifest."""
    if model_set is not None and model_set not in config.model_sets:
        raise DatasetError(
            f"no model set {model_set!r} in the config; known: {', '.join(config.model_sets)}"
        )
    _make_folder(out)
    async with database(config) as engine:
        if not await known_selection(engine, selection):
            raise DatasetError(f"no selection named {selection!r} (or it holds no scenarios)")
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "config": config_name,
            "created_at": datetime.now(UTC).isoformat(),
            "selection": selection,
        }
        if output is ExportFormat.hf:
            sets = [model_set] if model_set is not None else list(config.model_sets)
            written = await _release(engine, config, out, sets, selection)
            lossless = await _lossless(engine, out / LOSSLESS_FOLDER, "jsonl", selection)
            _write_manifest(out / LOSSLESS_FOLDER, {**manifest, "format": FORMAT_NAME, **lossless})
            manifest |= {
                "format": HF_FORMAT,
                "release": release.RELEASE,
                "files": written,
                "lossless": LOSSLESS_FOLDER,
            }
            (out / "README.md").write_text(_card(written, config_name))
        else:
            manifest |= {"format": FORMAT_NAME}
            manifest |= await _lossless(engine, out, output.value, selection)
    _write_manifest(out, manifest)
    return manifest


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


# --- the lossless dump -----------------------------------------------------------------------

_BY_SCENARIO = "scenario_id IN (SELECT scenario_id FROM selection_members WHERE selection = :s)"
_BY_PAIR = (
    "pair_id IN (SELECT x.pair_id FROM scenarios x JOIN selection_members m "
    "ON m.scenario_id = x.scenario_id WHERE m.selection = :s)"
)
_SCOPES: dict[str, str] = {
    "value_pairs": _BY_PAIR,
    "spectra": _BY_PAIR,
    "scenario_drops": _BY_PAIR,
    "verdict_citations": (
        "verdict_id IN (SELECT v.verdict_id FROM verdicts v JOIN selection_members m "
        "ON m.scenario_id = v.scenario_id WHERE m.selection = :s)"
    ),
    "selections": "name = :s",
    "selection_members": "selection = :s",
}


def _scope(table: Table, selection: str) -> str | None:
    """The WHERE clause that keeps a table's rows of one selection; None = every row."""
    if selection == ALL_SCENARIOS:
        return None
    if table.name in _SCOPES:
        return _SCOPES[table.name]
    return _BY_SCENARIO if "scenario_id" in table.c else None


async def _rows(
    conn: AsyncConnection, table: Table, selection: str
) -> AsyncIterator[Sequence[Any]]:
    columns = file_columns(table)
    query = select(*columns).order_by(*(table.primary_key.columns or columns))
    scope = _scope(table, selection)
    if scope is not None:
        query = query.where(text(scope).bindparams(s=selection))
    result = await conn.stream(query.execution_options(yield_per=PARTITION))
    async for partition in result.partitions(PARTITION):
        for row in partition:
            yield row


async def _lossless(
    engine: AsyncEngine, folder: Path, encoding: str, selection: str
) -> dict[str, Any]:
    _make_folder(folder)
    counts: dict[str, int] = {}
    async with engine.connect() as conn:
        # one snapshot for every table, so the files agree with each other
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        for table in TABLES:
            columns = file_columns(table)
            path = folder / f"{table.name}.{encoding}"
            with path.open("w", newline="", encoding="utf-8") as handle:
                counts[table.name] = await _write_table(
                    conn,
                    table=table,
                    columns=columns,
                    handle=handle,
                    encoding=encoding,
                    selection=selection,
                )
    return {"encoding": encoding, "tables": [t.name for t in TABLES], "counts": counts}


async def _write_table(
    conn: AsyncConnection,
    *,
    table: Table,
    columns: Sequence[Any],
    handle: TextIO,
    encoding: str,
    selection: str,
) -> int:
    n = 0
    if encoding == "csv":
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([c.name for c in columns])
        async for row in _rows(conn, table, selection):
            writer.writerow([encode_csv(c, v) for c, v in zip(columns, row, strict=True)])
            n += 1
        return n
    async for row in _rows(conn, table, selection):
        record = {c.name: encode_json(c, v) for c, v in zip(columns, row, strict=True)}
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n


# --- the paper's release ---------------------------------------------------------------------

_NUMBERED = """
numbered AS (
    SELECT s.scenario_id, row_number() OVER (ORDER BY s.scenario_id) - 1 AS entry_idx
    FROM scenarios s
    WHERE CAST(:s AS text) = '*' OR s.scenario_id IN (
        SELECT scenario_id FROM selection_members WHERE selection = :s)
)"""

_COMPLETE = f"""
WITH {_NUMBERED}
SELECT n.entry_idx, s.generator, p.value1, p.value2, s.variant, s.query,
       x.value1_spectrum, x.value2_spectrum
FROM numbered n
JOIN scenarios s ON s.scenario_id = n.scenario_id
JOIN value_pairs p ON p.pair_id = s.pair_id
LEFT JOIN spectra x ON x.pair_id = s.pair_id
ORDER BY n.entry_idx
"""

_SPLIT = f"""
WITH {_NUMBERED},
split AS (
    SELECT d.scenario_id,
           row_number() OVER (ORDER BY d.disagreement DESC, d.scenario_id) AS rank
    FROM disagreement d JOIN numbered n ON n.scenario_id = d.scenario_id
    WHERE d.model_set = :set AND d.high
)
SELECT sp.rank, n.entry_idx, s.generator, p.value1, p.value2, s.variant, s.query,
       r.model_key, r.text, c.value1_position, c.value2_position
FROM split sp
JOIN numbered n ON n.scenario_id = sp.scenario_id
JOIN scenarios s ON s.scenario_id = sp.scenario_id
JOIN value_pairs p ON p.pair_id = s.pair_id
LEFT JOIN responses r ON r.scenario_id = s.scenario_id
LEFT JOIN classifications c ON c.response_id = r.response_id
ORDER BY sp.rank, r.model_key
"""

_JUDGED = f"""
WITH {_NUMBERED}
SELECT s.scenario_id, r.model_key, s.query, p.value1, p.value2, n.entry_idx, v.judge,
       v.decision, d.disagreement
FROM verdicts v
JOIN responses r ON r.response_id = v.response_id
JOIN numbered n ON n.scenario_id = v.scenario_id
JOIN scenarios s ON s.scenario_id = v.scenario_id
JOIN value_pairs p ON p.pair_id = s.pair_id
JOIN disagreement d ON d.scenario_id = s.scenario_id AND d.model_set = :set
WHERE v.spec_id = :spec AND v.spec_version = :version
ORDER BY d.disagreement, s.scenario_id, r.model_key, v.judge
"""

_ANSWERED = "SELECT DISTINCT model_key FROM responses ORDER BY model_key"


def _writer(path: Path, schema_: pa.Schema) -> pq.ParquetWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return pq.ParquetWriter(path, schema_)


async def _release(
    engine: AsyncEngine, config: Config, out: Path, sets: Sequence[str], selection: str
) -> dict[str, list[str]]:
    """The release's configs: split name -> file, per config."""
    written: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        answered = [r[0] for r in await conn.execute(text(_ANSWERED))]
        targets = [k for k in config.roles.targets if k in answered]
        models = targets + [k for k in answered if k not in targets]
        written[release.COMPLETE_CONFIG] = [await _complete(conn, out, selection)]
        written[release.DEFAULT_CONFIG] = [
            await _split(conn, out, name, models, selection) for name in sets
        ]
        judged = []
        for number, spec in enumerate(config.specs):
            family_set = _family_set(config, spec.families)
            if family_set is None:
                continue
            folder = release.JUDGE_CONFIG + ("" if number == 0 else f"_{spec.id}")
            judged += await _judgements(
                conn,
                folder=out / folder,
                config=config,
                spec=spec,
                family_set=family_set,
                selection=selection,
            )
        if judged:
            written[release.JUDGE_CONFIG] = judged
    return written


def _family_set(config: Config, families: Sequence[str]) -> str | None:
    """The model set made of exactly a spec's families, whose D bins its judge evaluations."""
    wanted = {f"family:{f}" for f in families}
    return next((n for n, m in config.model_sets.items() if set(m) == wanted), None)


# what names a scenario in both of the release's scenario configs
_SCENARIO_FIELDS = [
    ("query_generator", pa.string()),
    ("value1", pa.string()),
    ("value2", pa.string()),
    ("nudge_direction", pa.string()),
]
_STEP = pa.struct([("position", pa.string()), ("response", pa.string())])


async def _complete(conn: AsyncConnection, out: Path, selection: str) -> str:
    schema_ = pa.schema(
        [
            *_SCENARIO_FIELDS,
            ("entry_idx", pa.int64()),
            ("query", pa.string()),
            ("value1_spectrum", pa.list_(_STEP)),
            ("value2_spectrum", pa.list_(_STEP)),
        ]
    )
    relative = f"{release.COMPLETE_CONFIG}/train{SHARD}"
    writer = _writer(out / relative, schema_)
    try:
        result = await conn.stream(text(_COMPLETE).bindparams(s=selection))
        async for partition in result.partitions(PARTITION):
            columns: dict[str, list[Any]] = {name: [] for name in schema_.names}
            for r in partition:
                for name, value in zip(
                    ("entry_idx", "query_generator", "value1", "value2", "nudge_direction"),
                    (r.entry_idx, r.generator, r.value1, r.value2, r.variant),
                    strict=True,
                ):
                    columns[name].append(value)
                columns["query"].append(r.query)
                columns["value1_spectrum"].append(r.value1_spectrum or [])
                columns["value2_spectrum"].append(r.value2_spectrum or [])
            writer.write_table(pa.table(columns, schema=schema_))
    finally:
        writer.close()
    return relative


def scenario_schema(models: Sequence[str]) -> pa.Schema:
    """The columns of one of the release's model-set splits: a row per scenario, with each
    model's answer and its two spectrum positions."""
    return pa.schema(
        [
            ("rank", pa.int64()),
            *_SCENARIO_FIELDS,
            ("query", pa.string()),
            ("entry_idx", pa.int64()),
            *((f"response_{m}", pa.string()) for m in models),
            *(
                (f"{m}_{value}_position", pa.int64())
                for m in models
                for value in ("value1", "value2")
            ),
        ]
    )


async def _split(
    conn: AsyncConnection, out: Path, name: str, models: Sequence[str], selection: str
) -> str:
    schema_ = scenario_schema(models)
    relative = f"data/{name}{SHARD}"
    writer = _writer(out / relative, schema_)
    known = set(models)
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema_))
            rows.clear()

    try:
        result = await conn.stream(text(_SPLIT).bindparams(s=selection, set=name))
        current: dict[str, Any] | None = None
        async for partition in result.partitions(PARTITION):
            for r in partition:
                if current is None or current["rank"] != r.rank:
                    if len(rows) >= PARTITION:
                        flush()
                    current = {
                        "rank": r.rank,
                        "query_generator": r.generator,
                        "value1": r.value1,
                        "value2": r.value2,
                        "nudge_direction": r.variant,
                        "query": r.query,
                        "entry_idx": r.entry_idx,
                    }
                    rows.append(current)
                if r.model_key in known:
                    current[f"response_{r.model_key}"] = r.text
                    current[f"{r.model_key}_value1_position"] = r.value1_position
                    current[f"{r.model_key}_value2_position"] = r.value2_position
        flush()
    finally:
        writer.close()
    return relative


def _judge_column(judge: str) -> str:
    reverse = {key: stem for stem, key in release.JUDGE_COLUMN_KEYS.items()}
    return f"{reverse.get(judge, judge)}_decision"


async def _judgements(
    conn: AsyncConnection,
    *,
    folder: Path,
    config: Config,
    spec: Any,
    family_set: str,
    selection: str,
) -> list[str]:
    """One file per D bin of the spec family's set: every judged answer, one column per judge."""
    judges = list(dict.fromkeys([*config.roles.judges]))
    by_answer: dict[tuple[str, str], dict[str, Any]] = {}
    std_column = f"max_pop_std_{spec.families[0] if len(spec.families) == 1 else family_set}"
    result = await conn.execute(
        text(_JUDGED).bindparams(s=selection, set=family_set, spec=spec.id, version=spec.version)
    )
    for r in result:
        if r.judge not in judges:
            judges.append(r.judge)
        row = by_answer.setdefault(
            (r.scenario_id, r.model_key),
            {
                "prompt": r.query,
                "model": r.model_key,
                std_column: r.disagreement,
                "chunk_idx": 0,
                "entry_idx": r.entry_idx,
                "query_key": r.scenario_id,
                "value1": r.value1,
                "value2": r.value2,
            },
        )
        row[_judge_column(r.judge)] = r.decision
    fields = [
        ("prompt", pa.string()),
        ("model", pa.string()),
        ("bin_name", pa.string()),
        ("std_range", pa.string()),
        (std_column, pa.float64()),
        ("chunk_idx", pa.int64()),
        ("entry_idx", pa.int64()),
        ("query_key", pa.string()),
        ("value1", pa.string()),
        ("value2", pa.string()),
        *((_judge_column(j), pa.string()) for j in judges),
    ]
    schema_ = pa.schema(fields)
    written = []
    for index, (name, low, high) in enumerate(release.JUDGE_BINS):
        last = index == len(release.JUDGE_BINS) - 1
        members = [
            {**row, "bin_name": name, "std_range": f"[{low}, {high}{']' if last else ')'}"}
            for row in by_answer.values()
            if low <= row[std_column] and (row[std_column] < high or last)
        ]
        relative = f"{folder.name}/{name}{SHARD}"
        pq.write_table(
            pa.Table.from_pylist(members, schema=schema_), _mkparent(folder / f"{name}{SHARD}")
        )
        written.append(relative)
    return written


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _card(written: dict[str, list[str]], config_name: str) -> str:
    """A dataset card whose YAML header declares the configs and splits the way the release's
    does, so `datasets.load_dataset(folder, config)` reads them."""
    lines = ["---", "configs:"]
    for config_name_ in (release.DEFAULT_CONFIG, release.COMPLETE_CONFIG, release.JUDGE_CONFIG):
        files = written.get(config_name_)
        if not files:
            continue
        lines += [f"  - config_name: {config_name_}", "    data_files:"]
        for relative in files:
            split = Path(relative).name[: -len(SHARD)]
            lines += [f"      - split: {split}", f"        path: {relative}"]
    lines += [
        "---",
        "",
        "# specstress export",
        "",
        f"Exported from a specstress study{f' ({config_name})' if config_name else ''} in the "
        f"schema of the `{release.RELEASE}` release. `specstress/` holds the lossless dump "
        "that `specstress import` reads back.",
        "",
    ]
    return "\n".join(lines)
