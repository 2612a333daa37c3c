"""Queries of the label tables: topics, refusal types and distinctive values, and the refusal
reports built on them (method 2.10, 2.11, 2.13).

Labels are facts: inserted with ON CONFLICT DO NOTHING on their natural keys (scenario, response,
response and rank), so a redelivered message that repeats a write changes nothing. Reports are
computed from the stored rows on every call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.batching import Coalescer, PerEngine
from specstress.db.engine import reading
from specstress.db.schema import distinctive_values, refusal_types, topic_labels
from specstress.db.store import write_facts
from specstress.ids import advisory_lock_key, stable_id
from specstress.method import REFUSAL_TYPES, TOPIC_COLUMNS, TOPICS, is_refusal

__all__ = [
    "LabelBacklog",
    "RefusalRate",
    "RefusalScope",
    "TopicRefusalRate",
    "get_topic_labels",
    "insert_distinctive_values",
    "insert_refusal_types",
    "insert_topic_labels",
    "label_backlog",
    "refusal_rates",
    "refusal_rates_by_topic",
    "scenario_distinctive_values",
]

RefusalScope = Literal["all", "flagged"]


@dataclass(frozen=True)
class RefusalRate:
    """One model's refusal types over the answers in a report's scope."""

    model_key: str
    responses: int
    refusals: int
    # every one of the 7 types, in their canonical order, with its count (0 included)
    by_type: dict[str, int]

    @property
    def rate(self) -> float:
        return self.refusals / self.responses if self.responses else 0.0


@dataclass(frozen=True)
class TopicRefusalRate:
    """One model's refusals among its answers to scenarios labelled with one topic."""

    model_key: str
    topic: str
    responses: int
    refusals: int

    @property
    def rate(self) -> float:
        return self.refusals / self.responses if self.responses else 0.0


@dataclass(frozen=True)
class LabelBacklog:
    """Scenarios whose labels are missing although their trigger is long past."""

    topics: list[str]
    distinctive_values: list[str]
    refusal_types: list[str]


# --- lookups and writes ----------------------------------------------------------------------


async def get_topic_labels(engine: AsyncEngine, scenario_id: str) -> dict[str, bool] | None:
    """The scenario's topics by their JSON keys, or None when it has no topic label yet."""
    columns = [topic_labels.c[TOPIC_COLUMNS[topic]] for topic in TOPICS]
    async with reading(engine) as conn:
        row = (
            await conn.execute(select(*columns).where(topic_labels.c.scenario_id == scenario_id))
        ).first()
    if row is None:
        return None
    return dict(zip(TOPICS, (bool(v) for v in row), strict=True))


async def insert_topic_labels(
    engine: AsyncEngine,
    *,
    scenario_id: str,
    labeller: str,
    prompt_version: str,
    topics: Mapping[str, bool],
) -> None:
    row: dict[str, Any] = {
        "scenario_id": scenario_id,
        "labeller": labeller,
        "prompt_version": prompt_version,
    }
    row.update({TOPIC_COLUMNS[topic]: topics[topic] for topic in TOPICS})
    await write_facts(engine, (topic_labels, [row]))


async def insert_refusal_types(engine: AsyncEngine, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows need response_id, scenario_id, model_key, labeller, prompt_version, refusal_type and
    reasoning; whether the type counts as a refusal is derived here."""
    if not rows:
        return
    batch = [{**row, "refusal": is_refusal(row["refusal_type"])} for row in rows]
    await write_facts(engine, (refusal_types, batch))


async def insert_distinctive_values(engine: AsyncEngine, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows need response_id, rank, scenario_id, model_key, value, labeller, prompt_version.
    All rows of one labelling call go in one transaction, so an answer never has half a list;
    concurrent callers' lists share it."""
    if rows:
        await _distinctive_writes(engine).submit(tuple(rows))


async def _insert_distinctive_lists(
    engine: AsyncEngine, calls: Sequence[tuple[Mapping[str, Any], ...]]
) -> list[None]:
    # Two calls racing on one scenario (e.g. flags from two model sets while a late model
    # arrives, in two processes) must not interleave their lists: the first stored list of an
    # answer wins, and within one batch the first caller's.
    rows = [row for call in calls for row in call]
    locks = sorted(
        {advisory_lock_key(stable_id("distinctive_values", row["scenario_id"])) for row in rows}
    )
    async with engine.begin() as conn:
        # in key order (unnest keeps the array's): batches sharing scenarios cannot deadlock
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(key) FROM unnest(CAST(:keys AS bigint[])) AS key"),
            {"keys": locks},
        )
        stored = await conn.execute(
            select(distinctive_values.c.response_id)
            .distinct()
            .where(distinctive_values.c.response_id.in_(sorted({r["response_id"] for r in rows})))
        )
        done = {r.response_id for r in stored}
        batch: list[Mapping[str, Any]] = []
        for call in calls:
            answers = {row["response_id"] for row in call} - done
            batch += [row for row in call if row["response_id"] in answers]
            done |= answers
        if batch:
            await conn.execute(insert(distinctive_values).on_conflict_do_nothing(), batch)
    return [None for _ in calls]


_distinctive_writes: PerEngine[Coalescer[tuple[Mapping[str, Any], ...], None]] = PerEngine(
    lambda engine: Coalescer(
        lambda calls: _insert_distinctive_lists(engine, calls), name="distinctive value lists"
    )
)


async def scenario_distinctive_values(
    engine: AsyncEngine, scenario_id: str
) -> dict[str, list[str]]:
    """The stored distinctive values of a scenario's answers: model key -> values by rank."""
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(distinctive_values.c.model_key, distinctive_values.c.value)
            .where(distinctive_values.c.scenario_id == scenario_id)
            .order_by(distinctive_values.c.model_key, distinctive_values.c.rank)
        )
        result: dict[str, list[str]] = {}
        for r in rows:
            result.setdefault(r.model_key, []).append(r.value)
        return result


# --- work whose trigger passed without a label (the classifier's periodic sweep) -------------

_MISSING_TOPICS = """
SELECT DISTINCT d.scenario_id
FROM disagreement d
WHERE d.high
  AND d.computed_at < now() - make_interval(secs => :age)
  AND NOT EXISTS (SELECT 1 FROM topic_labels t WHERE t.scenario_id = d.scenario_id)
LIMIT 1000
"""

_MISSING_DISTINCTIVE = """
SELECT DISTINCT d.scenario_id
FROM disagreement d
JOIN classifications c ON c.scenario_id = d.scenario_id
WHERE d.high
  AND d.computed_at < now() - make_interval(secs => :age)
  AND NOT EXISTS (SELECT 1 FROM distinctive_values v WHERE v.response_id = c.response_id)
LIMIT 1000
"""

_MISSING_REFUSAL_TYPES = """
SELECT DISTINCT c.scenario_id
FROM classifications c
WHERE c.created_at < now() - make_interval(secs => :age)
  AND NOT EXISTS (SELECT 1 FROM refusal_types r WHERE r.response_id = c.response_id)
  AND (:scope = 'all' OR EXISTS (
      SELECT 1 FROM disagreement d WHERE d.scenario_id = c.scenario_id AND d.high))
LIMIT 1000
"""


async def label_backlog(
    engine: AsyncEngine, older_than_seconds: float, refusal_scope: RefusalScope
) -> LabelBacklog:
    params = {"age": older_than_seconds, "scope": refusal_scope}
    async with reading(engine) as conn:
        topics = await conn.execute(text(_MISSING_TOPICS), params)
        distinctive = await conn.execute(text(_MISSING_DISTINCTIVE), params)
        refusals = await conn.execute(text(_MISSING_REFUSAL_TYPES), params)
        return LabelBacklog(
            topics=[r.scenario_id for r in topics],
            distinctive_values=[r.scenario_id for r in distinctive],
            refusal_types=[r.scenario_id for r in refusals],
        )


# --- reports: refusal rate per model, overall and per topic (the paper's Figure 4) ------------

# With a model set, only answers to scenarios that set flags for high disagreement count.
_SCOPE = """
  AND (CAST(:model_set AS text) IS NULL OR r.scenario_id IN (
      SELECT d.scenario_id FROM disagreement d WHERE d.model_set = :model_set AND d.high))
"""

_TYPE_COUNTS = f"""
SELECT r.model_key, r.refusal_type, count(*) AS answers
FROM refusal_types r
WHERE true {_SCOPE}
GROUP BY r.model_key, r.refusal_type
"""

_TOPIC_REFUSALS = f"""
SELECT r.model_key, t.topic,
       count(*) AS answers,
       count(*) FILTER (WHERE r.refusal) AS refusals
FROM refusal_types r
JOIN scenario_topics t ON t.scenario_id = r.scenario_id
WHERE true {_SCOPE}
GROUP BY r.model_key, t.topic
"""


async def refusal_rates(engine: AsyncEngine, model_set: str | None = None) -> list[RefusalRate]:
    """Per model: answers labelled, refusals (the last three types) and the count of each type.

    Without `model_set` every labelled answer counts; with it, only answers to scenarios that
    set flags for high disagreement.
    """
    async with reading(engine) as conn:
        rows = (await conn.execute(text(_TYPE_COUNTS), {"model_set": model_set})).all()
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r.model_key, dict.fromkeys(REFUSAL_TYPES, 0))[r.refusal_type] = r.answers
    return [
        RefusalRate(
            model_key=model_key,
            responses=sum(by_type.values()),
            refusals=sum(n for kind, n in by_type.items() if is_refusal(kind)),
            by_type=by_type,
        )
        for model_key, by_type in sorted(counts.items())
    ]


async def refusal_rates_by_topic(
    engine: AsyncEngine, model_set: str | None = None
) -> list[TopicRefusalRate]:
    """Per (model, topic): answers to scenarios labelled with the topic, and how many refused.

    Only scenarios with a topic label count (topics are labelled on flagged scenarios); a
    scenario with several topics counts once under each. Rows are in model, then topic order.
    """
    async with reading(engine) as conn:
        rows = (await conn.execute(text(_TOPIC_REFUSALS), {"model_set": model_set})).all()
    order = {topic: i for i, topic in enumerate(TOPICS)}
    rates = [TopicRefusalRate(r.model_key, r.topic, r.answers, r.refusals) for r in rows]
    return sorted(rates, key=lambda rate: (rate.model_key, order[rate.topic]))
