"""Every query the stages run, as named functions over the tables in `schema`.

Facts are written with INSERT ... ON CONFLICT DO NOTHING on their deterministic keys, so a
redelivered message that repeats a write changes nothing. Only the derived `disagreement` rows
are upserted, because they are recomputed from facts.

The stages' facts and the lookups they make for every message go through coalescers
(`specstress.db.batching`): the rows that concurrent handlers write meet in one transaction,
one batch of inserts per table, and their lookups in one query over an array of ids. Each
coalescer runs its statements, compiled once, on a connection of its own
(`specstress.db.direct`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    JSON,
    ColumnElement,
    FromClause,
    Select,
    Table,
    any_,
    bindparam,
    cast,
    func,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import String, Text

from specstress.db.batching import Coalescer, PerEngine
from specstress.db.direct import DirectConnection, Statement
from specstress.db.engine import reading
from specstress.db.schema import (
    classifications,
    dead_letters,
    disagreement,
    distinctive_values,
    models,
    refusal_types,
    responses,
    scenario_drops,
    scenarios,
    spectra,
    topic_labels,
    value_pairs,
    values,
    verdict_citations,
    verdicts,
)
from specstress.text import storable

__all__ = [
    "ClassificationContext",
    "LabellingContext",
    "PairRow",
    "PairState",
    "PositionRow",
    "ResponseRow",
    "ScenarioRow",
    "SpectrumRow",
    "active_models",
    "classification_context",
    "get_response",
    "insert_classifications",
    "insert_drop",
    "insert_pairs",
    "insert_response",
    "insert_scenario",
    "insert_spectrum",
    "insert_values",
    "insert_verdict",
    "labelling_context",
    "list_models",
    "pair_scenarios",
    "pair_state",
    "pairs_missing_spectra",
    "record_dead_letter",
    "register_model",
    "scenario_ids_after",
    "scenario_positions",
    "scenario_responses",
    "scenario_with_response",
    "unaggregated_scenarios",
    "unclassified_scenarios",
    "unsettled_pairs",
    "upsert_disagreement",
    "verdict_exists",
    "write_facts",
]


@dataclass(frozen=True)
class PairRow:
    pair_id: str
    value1: str
    value2: str
    taxonomy_version: str


@dataclass(frozen=True)
class ScenarioRow:
    scenario_id: str
    pair_id: str
    variant: str
    generator: str
    query: str


@dataclass(frozen=True)
class ResponseRow:
    response_id: str
    scenario_id: str
    model_key: str
    family: str
    text: str
    classified: bool


@dataclass(frozen=True)
class SpectrumRow:
    spectrum_id: str
    pair_id: str
    value1_spectrum: list[dict[str, str]]
    value2_spectrum: list[dict[str, str]]


@dataclass(frozen=True)
class PositionRow:
    response_id: str
    model_key: str
    family: str
    value1_position: int
    value2_position: int


# --- shared round trips ----------------------------------------------------------------------

Key = TypeVar("Key")
Found = TypeVar("Found")


def _any_of(column: ColumnElement[str], name: str) -> ColumnElement[bool]:
    """`column = ANY(:name)`: one statement text whatever the number of ids."""
    return column == any_(bindparam(name, type_=ARRAY(String)))


@dataclass(frozen=True)
class _Facts:
    """The rows one caller writes together, table by table in this order."""

    tables: tuple[tuple[Table, tuple[dict[str, Any], ...]], ...]


class _FactInsert:
    """INSERT ... ON CONFLICT DO NOTHING of any number of rows with the same columns, as one
    statement whose text does not depend on their number: the rows come as one array per
    column (a prepared statement per row would cost the server a plan execution each)."""

    def __init__(self, table: Table, columns: tuple[str, ...]) -> None:
        self._columns = columns
        # JSON goes as text, None as SQL NULL where the column says so and JSON null elsewhere
        self._json: dict[str, bool] = {}
        for name in columns:
            if isinstance(type_ := table.c[name].type, JSON):
                self._json[name] = type_.none_as_null

        def array(name: str) -> Any:
            # text without a length, so a value too long is refused, not cut, when stored
            type_ = table.c[name].type
            return ARRAY(Text if name in self._json or isinstance(type_, String) else type_)

        given = (
            func.unnest(*(bindparam(name, type_=array(name)) for name in columns))
            .table_valued(*columns)
            .render_derived()
        )
        rows = select(
            *(cast(given.c[n], JSONB) if n in self._json else given.c[n] for n in columns)
        )
        self._statement = Statement(
            insert(table).from_select(list(columns), rows).on_conflict_do_nothing()
        )

    async def run(self, conn: Any, rows: Sequence[dict[str, Any]]) -> None:
        values = {name: [row[name] for row in rows] for name in self._columns}
        for name, none_as_null in self._json.items():
            values[name] = [
                None if v is None and none_as_null else json.dumps(v) for v in values[name]
            ]
        await conn.execute(self._statement.sql, *self._statement.arguments(values))


_fact_insert = cache(_FactInsert)


async def _insert_facts(direct: DirectConnection, batch: Sequence[_Facts]) -> list[None]:
    # one insert per table (and set of columns), in the order the tables first come, which
    # keeps a parent row (a verdict) ahead of its children (its citations)
    grouped: dict[tuple[Table, tuple[str, ...]], list[dict[str, Any]]] = {}
    for facts in batch:
        for table, rows in facts.tables:
            for row in rows:
                grouped.setdefault((table, tuple(row)), []).append(row)
    async with direct.held() as conn:
        if len(grouped) == 1:
            # one statement is atomic on its own: no BEGIN and COMMIT round trips
            [((table, columns), table_rows)] = grouped.items()
            await _fact_insert(table, columns).run(conn, table_rows)
        else:
            async with conn.transaction():
                for (table, columns), table_rows in grouped.items():
                    await _fact_insert(table, columns).run(conn, table_rows)
    return [None for _ in batch]


class _Lookup(Generic[Key, Found]):
    """One query for the keys that concurrent callers ask about; `query` returns what it found
    by key (given an asyncpg connection), and each caller gets its key's (None when nothing
    was found)."""

    def __init__(
        self,
        engine: AsyncEngine,
        name: str,
        query: Callable[[Any, list[Key]], Awaitable[dict[Key, Found]]],
    ) -> None:
        self._direct = DirectConnection(engine)
        self._query = query
        self._coalescer: Coalescer[Key, Found | None] = Coalescer(self._run, name=name)

    async def __call__(self, key: Key) -> Found | None:
        return await self._coalescer.submit(key)

    async def _run(self, keys: Sequence[Key]) -> list[Found | None]:
        async with self._direct.held() as conn:
            found = await self._query(conn, list(dict.fromkeys(keys)))
        return [found.get(key) for key in keys]


class _Batches:
    """The coalescers of one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        facts = DirectConnection(engine)
        self.facts: Coalescer[_Facts, None] = Coalescer(
            lambda batch: _insert_facts(facts, batch), name="fact inserts"
        )
        self.scenario_with_response = _Lookup(
            engine, "scenario and answer lookups", _scenarios_with_responses
        )
        self.scenario_responses = _Lookup(engine, "scenario answers", _scenarios_responses)
        self.response = _Lookup(engine, "response lookups", _responses)
        self.verdict = _Lookup(engine, "verdict lookups", _verdicts)
        self.classification_context = _Lookup(
            engine, "classification contexts", _classification_contexts
        )
        self.labelling_context = _Lookup(engine, "labelling contexts", _labelling_contexts)
        self.model_state = _Lookup(engine, "model states", _model_states)
        self.positions = _Lookup(engine, "scenario positions", _scenarios_positions)
        self.pair_state = _Lookup(engine, "pair states", _PAIR_STATES.read)
        self.pair_progress = _Lookup(engine, "pair progress", _PAIR_PROGRESS.read)
        self.pair_scenarios = _Lookup(engine, "pair scenarios", _pair_scenarios)
        self.disagreement: Coalescer[tuple[dict[str, Any], ...], None] = Coalescer(
            lambda batch: _upsert_disagreements(engine, batch), name="disagreement upserts"
        )


_batches = PerEngine(_Batches)


async def write_facts(engine: AsyncEngine, *tables: tuple[Table, Sequence[dict[str, Any]]]) -> None:
    """Insert facts (ON CONFLICT DO NOTHING) in one transaction with those of concurrent
    callers; returns once they are committed."""
    await _batches(engine).facts.submit(_Facts(tuple((t, tuple(rows)) for t, rows in tables)))


# --- dead letters ----------------------------------------------------------------------------


async def record_dead_letter(
    engine: AsyncEngine,
    *,
    consumer: str,
    subject: str,
    stream_sequence: int | None,
    deliveries: int,
    reason: str,
    reason_code: str,
    stage: str,
    unit: str | None,
    payload: str,
) -> int:
    """Record a message given up on and return its id (that of the earlier row when a
    redelivery of the same message was recorded before); its reason and payload are made
    storable first, since a payload may be dead because it holds what Postgres refuses."""
    async with engine.begin() as conn:
        new: int | None = await conn.scalar(
            insert(dead_letters)
            .values(
                consumer=consumer,
                subject=subject,
                stream_sequence=stream_sequence,
                deliveries=deliveries,
                reason=storable(reason),
                reason_code=reason_code,
                stage=stage,
                unit=None if unit is None else storable(unit),
                payload=storable(payload),
            )
            .on_conflict_do_nothing()
            .returning(dead_letters.c.dead_letter_id)
        )
        if new is not None:
            return new
        earlier = await conn.execute(
            select(dead_letters.c.dead_letter_id).where(
                dead_letters.c.consumer == consumer,
                dead_letters.c.stream_sequence == stream_sequence,
            )
        )
        return int(earlier.scalar_one())


# --- taxonomy, pairs and models --------------------------------------------------------------


async def insert_values(engine: AsyncEngine, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    async with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(
                insert(values).on_conflict_do_nothing(), list(rows[start : start + 5000])
            )


async def insert_pairs(engine: AsyncEngine, rows: Sequence[dict[str, Any]]) -> int:
    """Insert sampled pairs; returns how many were new."""
    if not rows:
        return 0
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(value_pairs).on_conflict_do_nothing().returning(value_pairs.c.pair_id),
            list(rows),
        )
        return len(result.all())


async def register_model(engine: AsyncEngine, model_key: str, family: str) -> bool:
    """Activate a target model; returns True when it was not active before."""
    async with engine.begin() as conn:
        before = (
            await conn.execute(select(models.c.active).where(models.c.model_key == model_key))
        ).scalar()
        await conn.execute(
            insert(models)
            .values(model_key=model_key, family=family, active=True)
            .on_conflict_do_update(
                index_elements=[models.c.model_key], set_={"active": True, "family": family}
            )
        )
    return before is not True


async def active_models(engine: AsyncEngine) -> list[tuple[str, str]]:
    """(model key, family) of every active target model, by key."""
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(models.c.model_key, models.c.family)
            .where(models.c.active)
            .order_by(models.c.model_key)
        )
        return [(r.model_key, r.family) for r in rows]


async def list_models(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        answered = (
            select(responses.c.model_key, func.count().label("responses"))
            .group_by(responses.c.model_key)
            .subquery()
        )
        rows = await conn.execute(
            select(models, func.coalesce(answered.c.responses, 0).label("responses"))
            .outerjoin(answered, answered.c.model_key == models.c.model_key)
            .order_by(models.c.model_key)
        )
        return [dict(r._mapping) for r in rows]


# --- scenarios -------------------------------------------------------------------------------

# the columns of a ScenarioRow, in its order
_SCENARIO = (
    scenarios.c.scenario_id,
    scenarios.c.pair_id,
    scenarios.c.variant,
    scenarios.c.generator,
    scenarios.c.query,
)


@dataclass(frozen=True)
class PairState:
    """A pair with what the stages before the answers have made of it so far."""

    pair: PairRow
    # stored scenarios by variant, and the dropped variants with their reasons
    scenarios: dict[str, ScenarioRow]
    drops: dict[str, str]
    spectrum: SpectrumRow | None


async def pair_state(
    engine: AsyncEngine, pair_id: str, *, with_spectrum: bool = True
) -> PairState | None:
    """A pair with its scenarios, drops and (unless `with_spectrum` is False, for a role that
    may not read spectra) its spectrum; None when the pair is not in the database. Concurrent
    callers' pairs are read in one query."""
    batches = _batches(engine)
    return await (batches.pair_state if with_spectrum else batches.pair_progress)(pair_id)


async def pair_scenarios(engine: AsyncEngine, pair_id: str) -> dict[str, ScenarioRow]:
    """The pair's stored scenarios, by variant; concurrent callers' in one query."""
    return await _batches(engine).pair_scenarios(pair_id) or {}


_PAIR_SCENARIOS = Statement(select(*_SCENARIO).where(_any_of(scenarios.c.pair_id, "ids")))


async def _pair_scenarios(conn: Any, pair_ids: list[str]) -> dict[str, dict[str, ScenarioRow]]:
    found: dict[str, dict[str, ScenarioRow]] = {}
    for row in await conn.fetch(_PAIR_SCENARIOS.sql, *_PAIR_SCENARIOS.arguments({"ids": pair_ids})):
        found.setdefault(row["pair_id"], {})[row["variant"]] = ScenarioRow(*row)
    return found


def _by_variant(table: Table, *columns: str) -> FromClause:
    """One array per column of the outer query's pair's rows in `table`, in variant order (NULL
    when it has none): a pair has at most three, so one row per pair carries them all."""
    return (
        select(
            *(
                func.array_agg(aggregate_order_by(table.c[c], table.c.variant)).label(c)
                for c in columns
            )
        )
        .where(table.c.pair_id == value_pairs.c.pair_id)
        .lateral()
    )


_stored = _by_variant(scenarios, "scenario_id", "variant", "generator", "query")
_dropped = _by_variant(scenario_drops, "variant", "reason")


class _PairStates:
    """The pair-state read, built once, with or without the pair's spectrum (each stage's
    role reads only the tables it needs)."""

    def __init__(self, *, with_spectrum: bool) -> None:
        query = select(
            value_pairs.c.pair_id,
            value_pairs.c.value1,
            value_pairs.c.value2,
            value_pairs.c.taxonomy_version,
            _stored.c.scenario_id.label("scenario_ids"),
            _stored.c.variant.label("variants"),
            _stored.c.generator.label("generators"),
            _stored.c.query.label("queries"),
            _dropped.c.variant.label("dropped"),
            _dropped.c.reason.label("reasons"),
        ).select_from(value_pairs)
        if with_spectrum:
            query = query.add_columns(
                spectra.c.spectrum_id, spectra.c.value1_spectrum, spectra.c.value2_spectrum
            ).outerjoin(spectra, spectra.c.pair_id == value_pairs.c.pair_id)
        self._statement = Statement(
            query.join(_stored, true())
            .join(_dropped, true())
            .where(_any_of(value_pairs.c.pair_id, "ids"))
        )

    async def read(self, conn: Any, pair_ids: list[str]) -> dict[str, PairState]:
        found = {}
        arguments = self._statement.arguments({"ids": pair_ids})
        for row in await conn.fetch(self._statement.sql, *arguments):
            pair_id = row["pair_id"]
            pair = PairRow(pair_id, row["value1"], row["value2"], row["taxonomy_version"])
            stored = zip(
                row["scenario_ids"] or (),
                row["variants"] or (),
                row["generators"] or (),
                row["queries"] or (),
                strict=True,
            )
            spectrum = None
            if row.get("spectrum_id") is not None:
                spectrum = SpectrumRow(
                    row["spectrum_id"], pair_id, row["value1_spectrum"], row["value2_spectrum"]
                )
            found[pair_id] = PairState(
                pair,
                scenarios={
                    variant: ScenarioRow(scenario_id, pair_id, variant, generator, query)
                    for scenario_id, variant, generator, query in stored
                },
                drops=dict(zip(row["dropped"] or (), row["reasons"] or (), strict=True)),
                spectrum=spectrum,
            )
        return found


_PAIR_STATES = _PairStates(with_spectrum=True)
_PAIR_PROGRESS = _PairStates(with_spectrum=False)


async def insert_scenario(
    engine: AsyncEngine,
    *,
    scenario_id: str,
    pair_id: str,
    variant: str,
    generator: str,
    prompt_version: str,
    query: str,
) -> None:
    row = {
        "scenario_id": scenario_id,
        "pair_id": pair_id,
        "variant": variant,
        "generator": generator,
        "prompt_version": prompt_version,
        "query": query,
    }
    await write_facts(engine, (scenarios, [row]))


async def insert_drop(
    engine: AsyncEngine, *, pair_id: str, variant: str, generator: str, reason: str, raw: str
) -> None:
    row = {
        "pair_id": pair_id,
        "variant": variant,
        "generator": generator,
        "reason": reason,
        "raw_output": raw,
    }
    await write_facts(engine, (scenario_drops, [row]))


async def scenario_ids_after(engine: AsyncEngine, after: str, limit: int) -> list[str]:
    """Scenario ids in key order, for paging through every scenario (backfills)."""
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(scenarios.c.scenario_id)
            .where(scenarios.c.scenario_id > after)
            .order_by(scenarios.c.scenario_id)
            .limit(limit)
        )
        return [r.scenario_id for r in rows]


# --- responses -------------------------------------------------------------------------------


async def scenario_with_response(
    engine: AsyncEngine, scenario_id: str, model_key: str
) -> tuple[ScenarioRow, str | None] | None:
    """A scenario and the id of `model_key`'s answer to it (None while unanswered); None when
    the scenario is not in the database."""
    return await _batches(engine).scenario_with_response((scenario_id, model_key))


# the answers of every asked model to every asked scenario: a few more than asked for
_SCENARIOS_WITH_RESPONSES = Statement(
    select(*_SCENARIO, responses.c.model_key, responses.c.response_id)
    .outerjoin(
        responses,
        (responses.c.scenario_id == scenarios.c.scenario_id)
        & _any_of(responses.c.model_key, "model_keys"),
    )
    .where(_any_of(scenarios.c.scenario_id, "scenario_ids"))
)


async def _scenarios_with_responses(
    conn: Any, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[ScenarioRow, str | None]]:
    arguments = _SCENARIOS_WITH_RESPONSES.arguments(
        {
            "scenario_ids": list({scenario for scenario, _ in keys}),
            "model_keys": list({model for _, model in keys}),
        }
    )
    found: dict[str, ScenarioRow] = {}
    answers: dict[tuple[str, str], str] = {}
    for row in await conn.fetch(_SCENARIOS_WITH_RESPONSES.sql, *arguments):
        found[row["scenario_id"]] = ScenarioRow(*row[:5])
        if row["response_id"] is not None:
            answers[(row["scenario_id"], row["model_key"])] = row["response_id"]
    return {key: (found[key[0]], answers.get(key)) for key in keys if key[0] in found}


async def insert_response(
    engine: AsyncEngine,
    *,
    response_id: str,
    scenario_id: str,
    model_key: str,
    text: str,
    thinking: str | None,
    params: dict[str, Any],
    llm_call_hash: str,
    cut: dict[str, int] | None = None,
) -> None:
    row = {
        "response_id": response_id,
        "scenario_id": scenario_id,
        "model_key": model_key,
        "text": text,
        "thinking": thinking,
        "params": params,
        "llm_call_hash": llm_call_hash,
        "cut": cut,
    }
    await write_facts(engine, (responses, [row]))


# the columns of a ResponseRow, in its order (with `models` and `classifications` joined)
_RESPONSE = (
    responses.c.response_id,
    responses.c.scenario_id,
    responses.c.model_key,
    models.c.family,
    responses.c.text,
    classifications.c.response_id.is_not(None).label("classified"),
)


def _responses_joined(*columns: Any) -> Any:
    return (
        select(*_RESPONSE, *columns)
        .join(models, models.c.model_key == responses.c.model_key)
        .outerjoin(classifications, classifications.c.response_id == responses.c.response_id)
    )


async def scenario_responses(engine: AsyncEngine, scenario_id: str) -> list[ResponseRow]:
    """Every response to a scenario, with its model's family and whether it is classified."""
    return await _batches(engine).scenario_responses(scenario_id) or []


_SCENARIOS_RESPONSES = Statement(
    _responses_joined()
    .where(_any_of(responses.c.scenario_id, "ids"))
    .order_by(responses.c.model_key)
)


async def _scenarios_responses(conn: Any, scenario_ids: list[str]) -> dict[str, list[ResponseRow]]:
    rows = await conn.fetch(
        _SCENARIOS_RESPONSES.sql, *_SCENARIOS_RESPONSES.arguments({"ids": scenario_ids})
    )
    found: dict[str, list[ResponseRow]] = {}
    for row in rows:
        found.setdefault(row["scenario_id"], []).append(ResponseRow(*row))
    return found


async def model_state(engine: AsyncEngine, model_key: str) -> tuple[bool, Any] | None:
    """(active, stored entry) of a registered model, None when the key is not registered."""
    return await _batches(engine).model_state(model_key)


_MODEL_STATES = Statement(
    select(models.c.model_key, models.c.active, models.c.entry).where(
        _any_of(models.c.model_key, "keys")
    )
)


async def _model_states(conn: Any, keys: list[str]) -> dict[str, tuple[bool, Any]]:
    rows = await conn.fetch(_MODEL_STATES.sql, *_MODEL_STATES.arguments({"keys": keys}))
    return {row["model_key"]: (bool(row["active"]), row["entry"]) for row in rows}


async def get_response(engine: AsyncEngine, response_id: str) -> tuple[ResponseRow, str] | None:
    """A response with the query it answered."""
    return await _batches(engine).response(response_id)


_RESPONSES = Statement(
    _responses_joined(scenarios.c.query)
    .join(scenarios, scenarios.c.scenario_id == responses.c.scenario_id)
    .where(_any_of(responses.c.response_id, "ids"))
)


async def _responses(conn: Any, response_ids: list[str]) -> dict[str, tuple[ResponseRow, str]]:
    rows = await conn.fetch(_RESPONSES.sql, *_RESPONSES.arguments({"ids": response_ids}))
    return {row["response_id"]: (ResponseRow(*row[:6]), row["query"]) for row in rows}


def _scenarios_with_pairs(*columns: Any) -> Select[Any]:
    """Scenarios joined to their pairs: a ScenarioRow's and a PairRow's columns (read back with
    `_scenario_and_pair`), then `columns`."""
    return select(
        *_SCENARIO,
        value_pairs.c.value1,
        value_pairs.c.value2,
        value_pairs.c.taxonomy_version,
        *columns,
    ).join(value_pairs, value_pairs.c.pair_id == scenarios.c.pair_id)


def _scenario_and_pair(row: Any) -> tuple[ScenarioRow, PairRow]:
    """From an asyncpg record of `_scenarios_with_pairs`."""
    scenario = ScenarioRow(*row[:5])
    return scenario, PairRow(row["pair_id"], row["value1"], row["value2"], row["taxonomy_version"])


@dataclass(frozen=True)
class ClassificationContext:
    """What the classifier's join needs besides the answers, read in one round trip."""

    scenario: ScenarioRow
    pair: PairRow
    spectrum: SpectrumRow | None
    active_models: frozenset[str]
    answered_by: frozenset[str]
    # models whose answer is dead-lettered (and not replayed): the join goes on without them
    abandoned_by: frozenset[str]
    any_classified: bool


async def classification_context(
    engine: AsyncEngine, scenario_id: str
) -> ClassificationContext | None:
    """A scenario with its pair, its pair's spectrum (None before it exists), the active
    target models, the models that answered it and whether any answer is classified; None
    when the scenario is not in the database."""
    return await _batches(engine).classification_context(scenario_id)


def _classification_query() -> Select[Any]:
    active = (
        select(func.coalesce(func.array_agg(models.c.model_key), text("'{}'")))
        .where(models.c.active)
        .scalar_subquery()
    )
    answered = (
        select(func.coalesce(func.array_agg(responses.c.model_key), text("'{}'")))
        .where(responses.c.scenario_id == scenarios.c.scenario_id)
        .scalar_subquery()
    )
    classified = (
        select(classifications.c.response_id)
        .where(classifications.c.scenario_id == scenarios.c.scenario_id)
        .exists()
    )
    # a dead letter of one answer names scenario/model; one of the fan-out names the scenario
    open_letters = dead_letters.c.replayed_at.is_(None) & (dead_letters.c.stage == "responses")
    abandoned = (
        select(
            func.coalesce(
                func.array_agg(func.split_part(dead_letters.c.unit, "/", 2)), text("'{}'")
            )
        )
        .where(open_letters, dead_letters.c.unit.startswith(scenarios.c.scenario_id + "/"))
        .scalar_subquery()
    )
    fan_out_lost = (
        select(dead_letters.c.dead_letter_id)
        .where(open_letters, dead_letters.c.unit == scenarios.c.scenario_id)
        .exists()
    )
    return (
        _scenarios_with_pairs(
            spectra.c.spectrum_id,
            spectra.c.value1_spectrum,
            spectra.c.value2_spectrum,
            active.label("active_models"),
            answered.label("answered_by"),
            abandoned.label("abandoned_by"),
            fan_out_lost.label("fan_out_lost"),
            classified.label("any_classified"),
        )
        .outerjoin(spectra, spectra.c.pair_id == scenarios.c.pair_id)
        .where(_any_of(scenarios.c.scenario_id, "ids"))
    )


_CLASSIFICATION_CONTEXTS = Statement(_classification_query())


async def _classification_contexts(
    conn: Any, scenario_ids: list[str]
) -> dict[str, ClassificationContext]:
    arguments = _CLASSIFICATION_CONTEXTS.arguments({"ids": scenario_ids})
    found = {}
    for row in await conn.fetch(_CLASSIFICATION_CONTEXTS.sql, *arguments):
        spectrum = None
        if row["spectrum_id"] is not None:
            spectrum = SpectrumRow(
                row["spectrum_id"], row["pair_id"], row["value1_spectrum"], row["value2_spectrum"]
            )
        abandoned = row["active_models"] if row["fan_out_lost"] else row["abandoned_by"]
        found[row["scenario_id"]] = ClassificationContext(
            *_scenario_and_pair(row),
            spectrum=spectrum,
            active_models=frozenset(row["active_models"]),
            answered_by=frozenset(row["answered_by"]),
            abandoned_by=frozenset(abandoned),
            any_classified=bool(row["any_classified"]),
        )
    return found


@dataclass(frozen=True)
class LabellingContext:
    """What the classifier's labelling steps need to decide what is missing on a scenario."""

    scenario: ScenarioRow
    pair: PairRow
    # every answer, classified or not, by model key
    answers: list[ResponseRow]
    # some model set currently finds high disagreement on the scenario
    flagged: bool
    topics_labelled: bool
    # ids of the answers that have a refusal type, and of those whose distinctive values are stored
    refusal_labelled: frozenset[str]
    distinctive_labelled: frozenset[str]


async def labelling_context(engine: AsyncEngine, scenario_id: str) -> LabellingContext | None:
    """A scenario with its pair, its answers and the labels it has; None when the scenario is
    not in the database. Concurrent callers' scenarios are read together."""
    return await _batches(engine).labelling_context(scenario_id)


def _response_ids(table: Table) -> ColumnElement[Any]:
    """The ids of the scenario's answers with a row in `table` (the outer query's scenario)."""
    return (
        select(func.coalesce(func.array_agg(table.c.response_id.distinct()), text("'{}'")))
        .where(table.c.scenario_id == scenarios.c.scenario_id)
        .scalar_subquery()
    )


def _labelling_query() -> Select[Any]:
    flagged = (
        select(disagreement.c.scenario_id)
        .where(disagreement.c.scenario_id == scenarios.c.scenario_id, disagreement.c.high)
        .exists()
    )
    topics = (
        select(topic_labels.c.scenario_id)
        .where(topic_labels.c.scenario_id == scenarios.c.scenario_id)
        .exists()
    )
    return _scenarios_with_pairs(
        flagged.label("flagged"),
        topics.label("topics_labelled"),
        _response_ids(refusal_types).label("refusal_labelled"),
        _response_ids(distinctive_values).label("distinctive_labelled"),
    ).where(_any_of(scenarios.c.scenario_id, "ids"))


_LABELLING_CONTEXTS = Statement(_labelling_query())


async def _labelling_contexts(conn: Any, scenario_ids: list[str]) -> dict[str, LabellingContext]:
    arguments = _LABELLING_CONTEXTS.arguments({"ids": scenario_ids})
    rows = await conn.fetch(_LABELLING_CONTEXTS.sql, *arguments)
    answers = await _scenarios_responses(conn, [row["scenario_id"] for row in rows])
    return {
        row["scenario_id"]: LabellingContext(
            *_scenario_and_pair(row),
            answers=answers.get(row["scenario_id"], []),
            flagged=bool(row["flagged"]),
            topics_labelled=bool(row["topics_labelled"]),
            refusal_labelled=frozenset(row["refusal_labelled"]),
            distinctive_labelled=frozenset(row["distinctive_labelled"]),
        )
        for row in rows
    }


# --- spectra ---------------------------------------------------------------------------------


async def insert_spectrum(
    engine: AsyncEngine,
    *,
    spectrum_id: str,
    pair_id: str,
    model_key: str,
    prompt_version: str,
    value1_spectrum: list[dict[str, str]],
    value2_spectrum: list[dict[str, str]],
) -> None:
    row = {
        "spectrum_id": spectrum_id,
        "pair_id": pair_id,
        "model_key": model_key,
        "prompt_version": prompt_version,
        "value1_spectrum": value1_spectrum,
        "value2_spectrum": value2_spectrum,
    }
    await write_facts(engine, (spectra, [row]))


# --- classifications -------------------------------------------------------------------------


async def insert_classifications(engine: AsyncEngine, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await write_facts(engine, (classifications, rows))


async def scenario_positions(engine: AsyncEngine, scenario_id: str) -> list[PositionRow]:
    """Every classified answer's positions on a scenario, by model key; the aggregator's
    concurrent handlers read theirs in one query."""
    return await _batches(engine).positions(scenario_id) or []


_SCENARIOS_POSITIONS = Statement(
    select(
        classifications.c.scenario_id,
        classifications.c.response_id,
        responses.c.model_key,
        models.c.family,
        classifications.c.value1_position,
        classifications.c.value2_position,
    )
    .join(responses, responses.c.response_id == classifications.c.response_id)
    .join(models, models.c.model_key == responses.c.model_key)
    .where(_any_of(classifications.c.scenario_id, "ids"))
    .order_by(classifications.c.scenario_id, responses.c.model_key)
)


async def _scenarios_positions(conn: Any, scenario_ids: list[str]) -> dict[str, list[PositionRow]]:
    arguments = _SCENARIOS_POSITIONS.arguments({"ids": scenario_ids})
    found: dict[str, list[PositionRow]] = {}
    for row in await conn.fetch(_SCENARIOS_POSITIONS.sql, *arguments):
        found.setdefault(row["scenario_id"], []).append(PositionRow(*row[1:]))
    return found


async def unclassified_scenarios(engine: AsyncEngine, older_than_seconds: float) -> list[str]:
    """Scenarios with a spectrum and a response left unclassified for longer than a wait."""
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(responses.c.scenario_id)
            .distinct()
            .join(scenarios, scenarios.c.scenario_id == responses.c.scenario_id)
            .join(spectra, spectra.c.pair_id == scenarios.c.pair_id)
            .outerjoin(classifications, classifications.c.response_id == responses.c.response_id)
            .where(
                classifications.c.response_id.is_(None),
                responses.c.created_at
                < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
            )
            .limit(1000)
        )
        return [r.scenario_id for r in rows]


# --- disagreement ----------------------------------------------------------------------------


# one statement whatever the number of rows: the rows come as one array per column
_UPSERT_DISAGREEMENT = text("""
INSERT INTO disagreement (scenario_id, model_set, members, value1_std, value2_std, disagreement, high)
SELECT * FROM unnest(CAST(:scenario_id AS text[]), CAST(:model_set AS text[]),
    CAST(:members AS integer[]), CAST(:value1_std AS float8[]), CAST(:value2_std AS float8[]),
    CAST(:disagreement AS float8[]), CAST(:high AS boolean[]))
ON CONFLICT (scenario_id, model_set) DO UPDATE SET
    members = excluded.members,
    value1_std = excluded.value1_std,
    value2_std = excluded.value2_std,
    disagreement = excluded.disagreement,
    high = excluded.high,
    computed_at = now()
""")
# the columns a caller's rows carry: all but the time of the computation
_DISAGREEMENT_COLUMNS = tuple(c.name for c in disagreement.c if c.name != "computed_at")


async def upsert_disagreement(engine: AsyncEngine, rows: Iterable[dict[str, Any]]) -> None:
    """Write recomputed D rows over the stored ones, in one statement with those of concurrent
    callers; returns once they are committed."""
    batch = tuple(rows)
    for row in batch:
        if missing := [c for c in _DISAGREEMENT_COLUMNS if c not in row]:
            raise ValueError(f"a disagreement row without {', '.join(missing)}: {row}")
    if batch:
        await _batches(engine).disagreement.submit(batch)


async def _upsert_disagreements(
    engine: AsyncEngine, batch: Sequence[tuple[dict[str, Any], ...]]
) -> list[None]:
    # a statement may update a row only once: of two callers' rows for one scenario and set,
    # the later one is written, as it would be had each caller upserted on its own
    latest = {(row["scenario_id"], row["model_set"]): row for rows in batch for row in rows}
    arrays = {c: [row[c] for row in latest.values()] for c in _DISAGREEMENT_COLUMNS}
    async with engine.connect() as conn:
        # a single statement is atomic: no BEGIN and COMMIT round trips around it
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(_UPSERT_DISAGREEMENT, arrays)
    return [None for _ in batch]


# --- verdicts --------------------------------------------------------------------------------


async def verdict_exists(engine: AsyncEngine, verdict_id: str) -> bool:
    return await _batches(engine).verdict(verdict_id) is not None


_VERDICTS = Statement(select(verdicts.c.verdict_id).where(_any_of(verdicts.c.verdict_id, "ids")))


async def _verdicts(conn: Any, verdict_ids: list[str]) -> dict[str, bool]:
    rows = await conn.fetch(_VERDICTS.sql, *_VERDICTS.arguments({"ids": verdict_ids}))
    return {row["verdict_id"]: True for row in rows}


async def insert_verdict(
    engine: AsyncEngine,
    *,
    verdict_id: str,
    response_id: str,
    scenario_id: str,
    judge: str,
    spec_id: str,
    spec_version: str,
    decision: str,
    reasoning: str,
    cited_sections: Sequence[str] = (),
    cut: dict[str, int] | None = None,
) -> None:
    """The verdict and the spec sections it cites, in one transaction."""
    verdict = {
        "verdict_id": verdict_id,
        "response_id": response_id,
        "scenario_id": scenario_id,
        "judge": judge,
        "spec_id": spec_id,
        "spec_version": spec_version,
        "decision": decision,
        "reasoning": reasoning,
        "cut": cut,
    }
    citations = [
        {"verdict_id": verdict_id, "anchor": anchor, "rank": rank}
        for rank, anchor in enumerate(cited_sections, start=1)
    ]
    await write_facts(engine, (verdicts, [verdict]), (verdict_citations, citations))


# --- reconciliation: work whose triggering event never arrived --------------------------------

_UNSETTLED_PAIRS = """
SELECT p.pair_id, p.value1, p.value2, p.taxonomy_version, p.run_index
FROM value_pairs p
WHERE (SELECT count(*) FROM scenarios s WHERE s.pair_id = p.pair_id)
    + (SELECT count(*) FROM scenario_drops d WHERE d.pair_id = p.pair_id) < 3
ORDER BY p.pair_id
"""

_MISSING_SPECTRA = """
SELECT DISTINCT ON (s.pair_id) s.scenario_id, s.pair_id, s.variant
FROM scenarios s
WHERE NOT EXISTS (SELECT 1 FROM spectra x WHERE x.pair_id = s.pair_id)
ORDER BY s.pair_id, s.variant
"""

_UNAGGREGATED = """
SELECT c.scenario_id, array_agg(c.response_id ORDER BY c.response_id) AS response_ids
FROM classifications c
GROUP BY c.scenario_id
HAVING max(c.created_at) > coalesce(
    (SELECT min(d.computed_at) FROM disagreement d WHERE d.scenario_id = c.scenario_id),
    '-infinity')
"""


async def unsettled_pairs(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        return [dict(r._mapping) for r in await conn.execute(text(_UNSETTLED_PAIRS))]


async def pairs_missing_spectra(engine: AsyncEngine) -> list[ScenarioRow]:
    async with reading(engine) as conn:
        rows = await conn.execute(text(_MISSING_SPECTRA))
        return [ScenarioRow(r.scenario_id, r.pair_id, r.variant, "", "") for r in rows]


async def unaggregated_scenarios(engine: AsyncEngine) -> list[tuple[str, list[str]]]:
    async with reading(engine) as conn:
        rows = await conn.execute(text(_UNAGGREGATED))
        return [(r.scenario_id, list(r.response_ids)) for r in rows]
