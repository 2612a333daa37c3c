"""`specstress import`: our own dump, or the paper's release, loaded as facts in one transaction.

Rows reach the database through COPY into temporary staging tables and one INSERT ... SELECT
... ON CONFLICT DO NOTHING per table and batch, so ids (the project's hash ids) make a second
import of the same file change nothing. Files are read in batches, never whole. Any bad row,
column or file raises DatasetError before the transaction commits, so nothing is half-imported.
D is then recomputed for every imported scenario with the aggregator's own definition.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow.parquet as pq
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from specstress import ids
from specstress.api import database
from specstress.config import Config
from specstress.dataset import release
from specstress.dataset.tables import (
    DERIVED_TABLES,
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLES,
    DatasetError,
    decode_csv,
    decode_json,
    file_columns,
)
from specstress.db import schema
from specstress.method import Position, disagreement_rows
from specstress.text import storable

__all__ = [
    "CLASSIFICATION_COLUMNS",
    "PAIR_COLUMNS",
    "RELEASE_SPEC",
    "RESPONSE_COLUMNS",
    "SCENARIO_COLUMNS",
    "SPECTRUM_COLUMNS",
    "VERDICT_COLUMNS",
    "ImportSummary",
    "import_dataset",
]

BATCH_ROWS = 2000
SCENARIO_PAGE = 2000
# one import at a time: two would race on the same ids only to skip each other's rows
_IMPORT_LOCK = 7201120250014
# the spec of the release's judge evaluations, for a config that governs no such family
RELEASE_SPEC = ("openai-model-spec", "2025-04-11")
RELEASE_PARAMS = {"source": release.RELEASE}
# the columns, in order, of the records the import copies into each study table
PAIR_COLUMNS = ["pair_id", "value1", "value2", "taxonomy_version", "seed", "run_index"]
SCENARIO_COLUMNS = ["scenario_id", "pair_id", "variant", "generator", "prompt_version", "query"]
RESPONSE_COLUMNS = ["response_id", "scenario_id", "model_key", "text", "params", "llm_call_hash"]
SPECTRUM_COLUMNS = [
    "spectrum_id",
    "pair_id",
    "model_key",
    "prompt_version",
    "value1_spectrum",
    "value2_spectrum",
]
CLASSIFICATION_COLUMNS = [
    "response_id",
    "scenario_id",
    "spectrum_id",
    "classifier",
    *(
        f"{v}_{part}"
        for v in ("value1", "value2")
        for part in ("position", "confidence", "reasoning")
    ),
]
VERDICT_COLUMNS = [
    "verdict_id",
    "response_id",
    "scenario_id",
    "judge",
    "spec_id",
    "spec_version",
    "decision",
    "reasoning",
]
_RELEASE_PARAMS_JSON = json.dumps(RELEASE_PARAMS)
RELEASE_AUTHOR = "release"
SUFFIXES = (".parquet", ".jsonl", ".csv")


@dataclass
class ImportSummary:
    """What an import read and stored; `inserted` counts new rows per table."""

    source: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    inserted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    scenarios_scored: int = 0

    def add(self, table: str, n: int) -> None:
        self.inserted[table] = self.inserted.get(table, 0) + n

    def skip(self, reason: str, n: int) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n


async def import_dataset(
    config: Config,
    path: Path,
    *,
    families: Mapping[str, str] | None = None,
    judges: Mapping[str, str] | None = None,
) -> ImportSummary:
    """Load a file or folder: our own export (a folder with manifest.json, or an `hf` export
    holding one under `specstress/`), or files of the paper's release in parquet, JSON Lines or
    CSV. `families` maps model keys to families where the name or the config does not tell;
    `judges` maps a release's `<judge>_decision` column stem to a judge key."""
    lossless = _lossless_folder(path)
    async with database(config) as engine:
        try:
            async with engine.begin() as conn:
                await conn.execute(select(func.pg_advisory_xact_lock(_IMPORT_LOCK)))
                loader = _Loader(conn, config)
                await loader.open()
                if lossless is not None:
                    summary = await loader.lossless(lossless)
                else:
                    summary = await loader.release_files(
                        _release_files(path), families or {}, judges or {}
                    )
                await loader.score(summary)
        except DBAPIError as exc:
            raise DatasetError(
                f"{path}: the database refused the data: {_db_message(exc)}"
            ) from None
    return summary


def _db_message(exc: DBAPIError) -> str:
    original = getattr(exc.orig, "__cause__", None) or exc.orig
    detail = getattr(original, "detail", None)
    message = (
        str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    )
    return f"{message} ({detail})" if detail else message


def _lossless_folder(path: Path) -> Path | None:
    """The folder of our own dump that `path` names, or None for release files."""
    if path.is_dir():
        candidates = [path, path / "specstress"]
    elif path.name == "manifest.json":
        candidates = [path.parent]
    else:
        candidates = []
    for folder in candidates:
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            body = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{manifest}: not a readable manifest ({exc})") from None
        if isinstance(body, dict) and body.get("format") == FORMAT_NAME:
            return folder
    return None


def _release_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise DatasetError(f"{path}: not a parquet, JSON Lines or CSV file")
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    if not found:
        raise DatasetError(f"{path}: holds no parquet, JSON Lines or CSV file")
    return found


# --- reading files in batches --------------------------------------------------------------


def _columns(path: Path) -> list[str]:
    try:
        if path.suffix == ".parquet":
            return list(pq.ParquetFile(path).schema_arrow.names)
        with path.open(newline="", encoding="utf-8") as handle:
            if path.suffix == ".csv":
                return next(csv.reader(handle), [])
            for line in handle:
                if line.strip():
                    first = json.loads(line)
                    if not isinstance(first, dict):
                        raise DatasetError(f"{path}: line 1 is not a JSON object")
                    return list(first)
            return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc})") from None


def _batches(path: Path, *, empty_is_null: bool = True) -> Iterator[list[dict[str, Any]]]:
    """Rows as dicts, BATCH_ROWS at a time. CSV cells are strings; an empty one is absent
    unless `empty_is_null` is off (our dump spells null out)."""
    try:
        if path.suffix == ".parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
                yield batch.to_pylist()
            return
        with path.open(newline="", encoding="utf-8") as handle:
            rows: list[dict[str, Any]] = []
            if path.suffix == ".csv":
                for number, row in enumerate(csv.DictReader(handle), start=2):
                    if None in row:
                        raise DatasetError(f"{path}: row {number} has more cells than the header")
                    rows.append(
                        {k: (None if v == "" and empty_is_null else v) for k, v in row.items()}
                    )
                    if len(rows) == BATCH_ROWS:
                        yield rows
                        rows = []
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DatasetError(
                            f"{path}: line {number} is not JSON ({exc.msg})"
                        ) from None
                    if not isinstance(row, dict):
                        raise DatasetError(f"{path}: line {number} is not a JSON object")
                    rows.append(row)
                    if len(rows) == BATCH_ROWS:
                        yield rows
                        rows = []
            if rows:
                yield rows
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read the file ({exc})") from None


# --- the loader ------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Loader:
    """One import's staging tables and the facts it writes, all on one connection."""

    def __init__(self, conn: AsyncConnection, config: Config) -> None:
        self.conn = conn
        self.config = config
        self.staged: set[str] = set()
        self.raw: Any = None
        self.source = ""

    async def open(self) -> None:
        # the driver's connection, inside the transaction SQLAlchemy began, for COPY
        self.raw = (await self.conn.get_raw_connection()).driver_connection
        await self.raw.execute(
            "CREATE TEMP TABLE import_scored (scenario_id text PRIMARY KEY) ON COMMIT DROP"
        )

    async def _stage(self, table: Table) -> str:
        name = f"import_{table.name}"
        if name not in self.staged:
            dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
            columns = ", ".join(
                f"{_quoted(c.name)} "
                + ("text" if isinstance(c.type, JSONB) else c.type.compile(dialect=dialect))
                for c in file_columns(table)
            )
            await self.raw.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")
            self.staged.add(name)
        return name

    async def put(
        self,
        table: Table,
        columns: Sequence[str],
        records: Sequence[tuple[Any, ...]],
        *,
        conflict: str = "ON CONFLICT DO NOTHING",
        where: str = "",
    ) -> int:
        """COPY records into the table's staging table, then insert the new ones; returns how
        many were new."""
        if not records:
            return 0
        stage = await self._stage(table)
        targets = ", ".join(_quoted(c) for c in columns)
        picks = ", ".join(
            f"s.{_quoted(c)}::jsonb" if isinstance(table.c[c].type, JSONB) else f"s.{_quoted(c)}"
            for c in columns
        )
        try:
            await self.raw.copy_records_to_table(stage, records=records, columns=list(columns))
            status = await self.raw.execute(
                f"INSERT INTO {_quoted(table.name)} ({targets}) SELECT {picks} FROM {stage} s "
                f"{where} {conflict}"
            )
            if table is schema.classifications:
                # the scenarios whose D this import recomputes
                await self.raw.execute(
                    f"INSERT INTO import_scored SELECT DISTINCT scenario_id FROM {stage} "
                    "ON CONFLICT DO NOTHING"
                )
            await self.raw.execute(f"TRUNCATE {stage}")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, TypeError) as exc:
            detail = getattr(exc, "detail", None)
            message = f"{exc} ({detail})" if detail else str(exc)
            raise DatasetError(f"{self.source}: table {table.name}: {message}") from None
        return int(status.rsplit(" ", 1)[-1])

    # --- our own dump --------------------------------------------------------------------

    async def lossless(self, folder: Path) -> ImportSummary:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{folder / 'manifest.json'}: format version {manifest.get('format_version')!r}; "
                f"this specstress reads version {FORMAT_VERSION}"
            )
        encoding = manifest.get("encoding")
        if encoding not in ("jsonl", "csv"):
            raise DatasetError(f"{folder / 'manifest.json'}: unknown encoding {encoding!r}")
        summary = _summary(folder)
        self.source = str(folder)
        for table in TABLES:
            path = folder / f"{table.name}.{encoding}"
            if not path.is_file():
                continue
            summary.files.append(str(path))
            if table.name in DERIVED_TABLES:
                continue
            await self._lossless_table(table, path, summary)
        return summary

    async def _lossless_table(self, table: Table, path: Path, summary: ImportSummary) -> None:
        columns = {c.name: c for c in file_columns(table)}
        present = _columns(path)
        if not present and path.suffix == ".jsonl":
            return  # no rows, so no keys to check
        required = [
            name
            for name, c in columns.items()
            if not c.nullable and c.server_default is None and name not in present
        ]
        if required:
            raise DatasetError(f"{path}: required column {required[0]!r} is missing")
        names = [n for n in present if n in columns]
        where = ""
        if table is schema.llm_calls:
            # the ledger's own id is not carried: a repeated import finds its rows by content
            where = (
                "WHERE NOT EXISTS (SELECT 1 FROM llm_calls l WHERE l.request_hash = s.request_hash "
                "AND l.attempt = s.attempt AND l.stage = s.stage AND l.model_key = s.model_key "
                "AND l.created_at IS NOT DISTINCT FROM s.created_at)"
            )
        line = 1 if path.suffix == ".jsonl" else 2
        for batch in _batches(path, empty_is_null=False):
            records = []
            for row in batch:
                record = []
                for name in names:
                    try:
                        raw = row.get(name)
                        if path.suffix == ".csv":
                            value = decode_csv(columns[name], "\\N" if raw is None else raw)
                        else:
                            value = decode_json(columns[name], raw)
                    except (ValueError, TypeError, json.JSONDecodeError) as exc:
                        raise DatasetError(f"{path}: row {line}, column {name!r}: {exc}") from None
                    if value is None and not columns[name].nullable:
                        raise DatasetError(f"{path}: row {line}, column {name!r} is empty")
                    record.append(value)
                records.append(tuple(record))
                line += 1
            summary.rows_read += len(records)
            summary.add(table.name, await self.put(table, names, records, where=where))

    # --- the paper's release -------------------------------------------------------------

    async def release_files(
        self, files: Sequence[Path], families: Mapping[str, str], judges: Mapping[str, str]
    ) -> ImportSummary:
        summary = _summary(files[0].parent if len(files) > 1 else files[0])
        self.source = summary.source
        scenario_files: list[tuple[Path, release.ScenarioLayout]] = []
        judge_files: list[tuple[Path, release.JudgeLayout]] = []
        for path in files:
            names = _columns(path)
            kind = release.layout_of(names)
            if kind == "scenarios":
                scenario_files.append((path, release.scenario_layout(names, str(path))))
            elif kind == "judges":
                judge_files.append((path, release.judge_layout(names, str(path), judges)))
            else:
                raise DatasetError(
                    f"{path}: neither scenario rows (value1, value2, query, nudge_direction, "
                    "query_generator, ...) nor judge evaluations (model, <judge>_decision, ...)"
                )
            summary.files.append(str(path))
        # files with spectra first, so answers of the same pair find them in place
        scenario_files.sort(key=lambda f: f[1].value1_spectrum is None and f[1].spectra is None)
        keys = sorted({a.model_key for _, layout in scenario_files for a in layout.answers})
        summary.models = await self._register(keys, families)
        for path, layout in scenario_files:
            for number, batch in _numbered(_batches(path), path):
                await self._scenario_batch(path, layout, number, batch, summary)
        for path, judge in judge_files:
            await self._judge_file(path, judge, summary)
        if judge_files:
            await self._verdicts(summary)
        return summary

    async def _register(self, keys: Sequence[str], families: Mapping[str, str]) -> dict[str, str]:
        """Register every model of the files as a target, with its family: the mapping given,
        then the config's, then what its name tells."""
        known = {m.key: m.family for m in self.config.models}
        stored = {
            r.model_key: r.family
            for r in await self.conn.execute(
                select(schema.models.c.model_key, schema.models.c.family)
            )
        }
        found: dict[str, str] = {}
        for key in keys:
            family = (
                families.get(key) or stored.get(key) or known.get(key) or release.infer_family(key)
            )
            if family is None:
                raise DatasetError(
                    f"cannot tell the family of model {key!r}: give it with --family {key}=FAMILY"
                )
            if len(key) > 64 or len(family) > 64:
                raise DatasetError(f"model key or family longer than 64 characters: {key!r}")
            found[key] = family
        await self.put(
            schema.models,
            ["model_key", "family", "active"],
            [(k, f, True) for k, f in found.items()],
        )
        return found

    async def _scenario_batch(
        self,
        path: Path,
        layout: release.ScenarioLayout,
        first: int,
        batch: Sequence[dict[str, Any]],
        summary: ImportSummary,
    ) -> None:
        values: dict[str, None] = {}
        pairs: dict[str, tuple[Any, ...]] = {}
        scenarios: dict[str, tuple[Any, ...]] = {}
        spectra: dict[str, tuple[Any, ...]] = {}
        answers: list[tuple[Any, ...]] = []
        scores: list[tuple[Any, ...]] = []
        for offset, row in enumerate(batch):
            where = f"{path}: row {first + offset}"
            value1 = _text(row, layout.value1, where)
            value2 = _text(row, layout.value2, where)
            # model-written text keeps its answer without what Postgres cannot store (NUL)
            query = storable(_text(row, layout.query, where))
            generator = _text(row, layout.query_generator, where)
            if len(generator) > 64:
                raise DatasetError(f"{where}, column {layout.query_generator!r}: longer than 64")
            try:
                variant = release.variant(row.get(layout.nudge_direction))
            except ValueError as exc:
                raise DatasetError(f"{where}, column {layout.nudge_direction!r}: {exc}") from None
            pair = ids.release_pair_id(value1, value2, release.RELEASE_TAXONOMY_VERSION, generator)
            scenario = ids.scenario_id(pair, variant, generator, release.RELEASE_PROMPT_VERSION)
            values.update({value1: None, value2: None})
            pairs[pair] = (pair, value1, value2, release.RELEASE_TAXONOMY_VERSION, 0, 0)
            scenarios[scenario] = (
                scenario,
                pair,
                variant,
                generator,
                release.RELEASE_PROMPT_VERSION,
                query,
            )
            spectrum = ids.spectrum_id(pair, RELEASE_AUTHOR, release.RELEASE_PROMPT_VERSION)
            steps = []
            for column in (layout.value1_spectrum, layout.value2_spectrum):
                try:
                    steps.append(release.spectrum(row.get(column) if column else None))
                except ValueError as exc:
                    raise DatasetError(f"{where}, column {column!r}: {exc}") from None
            if layout.spectra is not None and not steps[0]:
                try:
                    steps = list(release.spectrum_pair(row.get(layout.spectra)))
                except ValueError as exc:
                    raise DatasetError(f"{where}, column {layout.spectra!r}: {exc}") from None
            if spectrum not in spectra or steps[0]:
                spectra[spectrum] = (
                    spectrum,
                    pair,
                    RELEASE_AUTHOR,
                    release.RELEASE_PROMPT_VERSION,
                    json.dumps(steps[0]),
                    json.dumps(steps[1]),
                )
            for answer in layout.answers:
                answered = self._answer(row, answer, where)
                if answered is None:
                    continue
                text_, positions = answered
                text_ = storable(text_)
                response = ids.response_id(scenario, answer.model_key, RELEASE_PARAMS)
                answers.append(
                    (
                        response,
                        scenario,
                        answer.model_key,
                        text_,
                        _RELEASE_PARAMS_JSON,
                        "",
                    )
                )
                if positions is not None:
                    scores.append((response, scenario, spectrum, RELEASE_AUTHOR, *positions))
        summary.rows_read += len(batch)
        summary.add(
            "values",
            await self.put(
                schema.values,
                ["taxonomy_version", "value_id", "name", "level"],
                [(release.RELEASE_TAXONOMY_VERSION, v, v, 0) for v in values],
            ),
        )
        summary.add(
            "value_pairs",
            await self.put(schema.value_pairs, PAIR_COLUMNS, list(pairs.values())),
        )
        added = await self.put(schema.scenarios, SCENARIO_COLUMNS, list(scenarios.values()))
        summary.add("scenarios", added)
        summary.skip(
            "rows whose value pair, generator and nudge direction an earlier row with another "
            "query already holds",
            await self.raw.fetchval(
                "SELECT count(*) FROM unnest($1::text[]) AS i(id) "
                "WHERE NOT EXISTS (SELECT 1 FROM scenarios x WHERE x.scenario_id = i.id)",
                list(scenarios),
            ),
        )
        # a spectrum met later fills in a pair stored without one
        summary.add(
            "spectra",
            await self.put(
                schema.spectra,
                SPECTRUM_COLUMNS,
                list(spectra.values()),
                conflict=(
                    "ON CONFLICT (spectrum_id) DO UPDATE SET value1_spectrum = "
                    "EXCLUDED.value1_spectrum, value2_spectrum = EXCLUDED.value2_spectrum "
                    "WHERE spectra.value1_spectrum = '[]'::jsonb "
                    "AND EXCLUDED.value1_spectrum <> '[]'::jsonb"
                ),
            ),
        )
        # a (pair, variant) already held by another query keeps it: the later row is skipped
        kept = "WHERE EXISTS (SELECT 1 FROM scenarios x WHERE x.scenario_id = s.scenario_id) "
        new_answers = await self.put(
            schema.responses,
            RESPONSE_COLUMNS,
            answers,
            where=kept,
        )
        summary.add("responses", new_answers)
        summary.add(
            "classifications",
            await self.put(
                schema.classifications,
                CLASSIFICATION_COLUMNS,
                scores,
                where="WHERE EXISTS (SELECT 1 FROM responses x WHERE x.response_id = s.response_id) ",
            ),
        )

    @staticmethod
    def _answer(
        row: Mapping[str, Any], answer: release.AnswerColumns, where: str
    ) -> tuple[str, tuple[Any, ...] | None] | None:
        """(text, classification columns or None) of one model's answer; None when the row
        holds nothing of that model."""
        response = row.get(answer.response) if answer.response else None
        got: list[int | None] = []
        for column in (answer.value1_position, answer.value2_position):
            try:
                got.append(release.position(row.get(column)) if column else None)
            except ValueError as exc:
                raise DatasetError(f"{where}, column {column!r}: {exc}") from None
        if response is None and got == [None, None]:
            return None
        if (got[0] is None) != (got[1] is None):
            # a half-scored answer: stored, but D cannot use it
            got = [None, None]
        if response is not None and not isinstance(response, str):
            raise DatasetError(f"{where}, column {answer.response!r}: expected text")
        if got[0] is None:
            return response or "", None
        confidences: list[float | None] = []
        for column in (answer.value1_confidence, answer.value2_confidence):
            raw = row.get(column) if column else None
            try:
                confidences.append(None if raw is None else float(raw))
            except (TypeError, ValueError):
                raise DatasetError(f"{where}, column {column!r}: not a number") from None
        reasons = [
            str(row.get(c) or "") if c else ""
            for c in (answer.value1_reasoning, answer.value2_reasoning)
        ]
        return response or "", (
            got[0],
            confidences[0],
            reasons[0],
            got[1],
            confidences[1],
            reasons[1],
        )

    async def _judge_file(
        self, path: Path, layout: release.JudgeLayout, summary: ImportSummary
    ) -> None:
        if not layout.judges:
            raise DatasetError(f"{path}: no <judge>_decision column")
        await self.raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS import_judged (row_no bigint, file text, "
            "query text, model_key text, value1 text, value2 text, judge text, decision text, "
            "reasoning text) ON COMMIT DROP"
        )
        stored = {r[0] for r in await self.conn.execute(select(schema.models.c.model_key))}
        for number, batch in _numbered(_batches(path), path):
            records = []
            for offset, row in enumerate(batch):
                where = f"{path}: row {number + offset}"
                model = _model_key(_text(row, layout.model, where), stored)
                query = storable(_text(row, layout.query, where))
                value1 = _text(row, layout.value1, where)
                value2 = _text(row, layout.value2, where)
                for column, judge in layout.judges:
                    try:
                        decided = release.decision(row.get(column))
                    except ValueError as exc:
                        raise DatasetError(f"{where}, column {column!r}: {exc}") from None
                    if decided is None:
                        continue
                    reason = layout.reasonings.get(column)
                    records.append(
                        (
                            number + offset,
                            str(path),
                            query,
                            model,
                            value1,
                            value2,
                            judge,
                            decided,
                            str(row.get(reason) or "") if reason else "",
                        )
                    )
            summary.rows_read += len(batch)
            await self.raw.copy_records_to_table(
                "import_judged",
                records=records,
                columns=[
                    "row_no",
                    "file",
                    "query",
                    "model_key",
                    "value1",
                    "value2",
                    "judge",
                    "decision",
                    "reasoning",
                ],
            )

    async def _verdicts(self, summary: ImportSummary) -> None:
        """Each judged row's answer, found by its query, values and model; verdicts on it."""
        matched = await self.raw.fetch(
            "SELECT DISTINCT ON (j.file, j.row_no, j.judge) j.file, j.row_no, j.judge, "
            "j.decision, j.reasoning, r.response_id, r.scenario_id, m.family "
            "FROM import_judged j "
            "JOIN value_pairs p ON p.value1 = j.value1 AND p.value2 = j.value2 "
            # the query itself, or a prompt that quotes it (a judge's whole prompt)
            "JOIN scenarios s ON s.pair_id = p.pair_id "
            "AND (s.query = j.query OR strpos(j.query, s.query) > 0) "
            "JOIN responses r ON r.scenario_id = s.scenario_id AND r.model_key = j.model_key "
            "JOIN models m ON m.model_key = r.model_key "
            "ORDER BY j.file, j.row_no, j.judge, s.query = j.query DESC, "
            "length(s.query) DESC, s.scenario_id"
        )
        total = await self.raw.fetchval("SELECT count(*) FROM import_judged")
        summary.skip(
            "judge decisions whose answer is not in the database (import the scenario rows too)",
            total - len(matched),
        )
        records: dict[str, tuple[Any, ...]] = {}
        for m in matched:
            spec = self.config.spec_for_family(m["family"])
            spec_id, version = (spec.id, spec.version) if spec else RELEASE_SPEC
            verdict = ids.verdict_id(m["response_id"], m["judge"], spec_id, version)
            records.setdefault(
                verdict,
                (
                    verdict,
                    m["response_id"],
                    m["scenario_id"],
                    m["judge"],
                    spec_id,
                    version,
                    m["decision"],
                    m["reasoning"],
                ),
            )
        summary.add(
            "verdicts", await self.put(schema.verdicts, VERDICT_COLUMNS, list(records.values()))
        )

    # --- D, as the aggregator defines it -------------------------------------------------

    async def score(self, summary: ImportSummary) -> None:
        """Recompute D for every scenario that got classifications in this import, from every
        classification stored for it, a page of scenarios at a time."""
        after = ""
        columns = [c.name for c in schema.disagreement.columns if c.name != "computed_at"]
        while True:
            last = await self.raw.fetchval(
                "SELECT scenario_id FROM import_scored WHERE scenario_id > $1 "
                "ORDER BY scenario_id OFFSET $2 - 1 LIMIT 1",
                after,
                SCENARIO_PAGE,
            ) or await self.raw.fetchval("SELECT max(scenario_id) FROM import_scored")
            if last is None or last <= after:
                return
            positions: dict[str, list[Position]] = {}
            for r in await self.raw.fetch(_POSITIONS, after, last):
                positions.setdefault(r[0], []).append((r[1], r[2], r[3], r[4]))
            records = [
                tuple(row[c] for c in columns)
                for scenario, found in positions.items()
                for row in disagreement_rows(self.config, scenario, found)
            ]
            await self.put(schema.disagreement, columns, records, conflict=_RESCORE)
            summary.scenarios_scored += len(positions)
            after = last


# the positions D is computed from: every classified answer with its model's family (as the
# aggregator reads them, store.scenario_positions), for the scored scenarios in ($1, $2]
_POSITIONS = """
SELECT c.scenario_id, r.model_key, m.family, c.value1_position, c.value2_position
FROM import_scored i
JOIN classifications c ON c.scenario_id = i.scenario_id
JOIN responses r ON r.response_id = c.response_id
JOIN models m ON m.model_key = r.model_key
WHERE i.scenario_id > $1 AND i.scenario_id <= $2
ORDER BY c.scenario_id, r.model_key
"""
# a recomputed D replaces the stored one, as store.upsert_disagreement does
_RESCORE = (
    "ON CONFLICT (scenario_id, model_set) DO UPDATE SET members = EXCLUDED.members, "
    "value1_std = EXCLUDED.value1_std, value2_std = EXCLUDED.value2_std, "
    "disagreement = EXCLUDED.disagreement, high = EXCLUDED.high, computed_at = now()"
)


def _summary(where: Path) -> ImportSummary:
    return ImportSummary(source=str(where))


def _numbered(
    batches: Iterator[list[dict[str, Any]]], path: Path
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Batches with the row number (as a person counts them in the file) of their first row."""
    first = 2 if path.suffix == ".csv" else 1
    for batch in batches:
        yield first, batch
        first += len(batch)


def _text(row: Mapping[str, Any], column: str, where: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}, column {column!r} is empty")
    if not isinstance(value, str):
        raise DatasetError(f"{where}, column {column!r}: expected text, got {value!r}")
    return value


def _model_key(name: str, stored: set[str]) -> str:
    """A judged model named as its key or by its display name (`gpt-4.1-mini`)."""
    if name in stored:
        return name
    plain = name.strip().lower().replace("-", "_").replace(".", "_")
    return plain if plain in stored else name
