"""Scenario-level reads, shared by the explorer and the report: a keyset-paginated scenario
list, one scenario with every answer, and a model's profile next to its family. Every statement
only reads.

The list walks `ix_disagreement_set_d` (model set, D, scenario id) in D order and stops after
one page, so a page costs the same at 400k scenarios as at 40: no OFFSET, no count(*). Filters
are correlated EXISTS probes on indexed keys, evaluated only for the rows the walk visits. With
a very selective filter (a rare value name, a text search) the planner starts from that filter's
index instead (`ix_value_pairs_value1/2`, the trigram index on the query) and sorts the few
matches. Plans at 411k scenarios x 4 model sets (`python -m bench.explorer`):

    Limit  (rows=51)
      ->  Nested Loop
            ->  Nested Loop
                  ->  Index Scan Backward using ix_disagreement_set_d on disagreement d
                        Index Cond: ((model_set = 'all') AND (ROW(disagreement, scenario_id)
                                     < ROW(1.8, '...')))
                  ->  Index Scan using pk_scenarios on scenarios s
            ->  Index Scan using pk_value_pairs on value_pairs p
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.analysis.queries import ALL_SCENARIOS
from specstress.db import reading
from specstress.errors import InputError
from specstress.method import REFUSAL_TYPES, TOPIC_COLUMNS

__all__ = [
    "VERDICT_PATTERNS",
    "Page",
    "ScenarioFilter",
    "decode_cursor",
    "encode_cursor",
    "explain_list",
    "list_scenarios",
    "model_profile",
    "scenario_detail",
]

Row = dict[str, Any]
Level = Literal["high", "low"]
Order = Literal["desc", "asc"]

# verdict pattern -> (label, condition on the scenario's rows of `scenario_compliance`)
VERDICT_PATTERNS: dict[str, tuple[str, str]] = {
    "family-all-majority": (
        "every judged family answer flagged (majority of judges)",
        "EXISTS (SELECT 1 FROM scenario_compliance c WHERE c.scenario_id = d.scenario_id "
        "AND c.frequent_noncompliance_majority)",
    ),
    "family-all-any": (
        "every judged family answer flagged (any judge)",
        "EXISTS (SELECT 1 FROM scenario_compliance c WHERE c.scenario_id = d.scenario_id "
        "AND c.frequent_noncompliance_any)",
    ),
    "some-majority": (
        "some answer flagged by a majority",
        "EXISTS (SELECT 1 FROM scenario_compliance c WHERE c.scenario_id = d.scenario_id "
        "AND c.majority_flagged > 0)",
    ),
    "none-flagged": (
        "judged, no answer flagged by any judge",
        "EXISTS (SELECT 1 FROM scenario_compliance c WHERE c.scenario_id = d.scenario_id "
        "AND c.any_flagged = 0)",
    ),
    "judged": (
        "judged at all",
        "EXISTS (SELECT 1 FROM verdicts v WHERE v.scenario_id = d.scenario_id)",
    ),
    "unjudged": (
        "not judged",
        "NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.scenario_id = d.scenario_id)",
    ),
}

MAX_PAGE = 200
_CURSOR = re.compile(r"^(-?[0-9.eE+-]+):([A-Za-z0-9_-]{1,32})$")


@dataclass(frozen=True)
class ScenarioFilter:
    """What the list shows: scenarios scored for `model_set`, narrowed by the rest."""

    model_set: str
    selection: str = ALL_SCENARIOS
    d_min: float | None = None
    d_max: float | None = None
    level: Level | None = None
    topic: str | None = None
    value: str | None = None
    generator: str | None = None
    verdicts: str | None = None
    refusal_type: str | None = None
    search: str | None = None
    order: Order = "desc"

    def check(self, model_sets: list[str]) -> None:
        """InputError names the first filter that cannot match anything meaningful."""
        if self.model_set not in model_sets:
            raise InputError(f"no model set {self.model_set!r}; known: {', '.join(model_sets)}")
        if self.topic is not None and self.topic not in TOPIC_COLUMNS:
            raise InputError(f"unknown topic {self.topic!r}")
        if self.refusal_type is not None and self.refusal_type not in REFUSAL_TYPES:
            raise InputError(f"unknown refusal type {self.refusal_type!r}")
        if self.verdicts is not None and self.verdicts not in VERDICT_PATTERNS:
            raise InputError(
                f"unknown verdict pattern {self.verdicts!r}; "
                f"choose one of: {', '.join(VERDICT_PATTERNS)}"
            )
        for name, bound in (("d_min", self.d_min), ("d_max", self.d_max)):
            if bound is not None and not 0 <= bound <= 3:
                raise InputError(f"{name} must be between 0 and 3, not {bound}")


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    # cursor of the next page; None on the last one
    next_cursor: str | None


def encode_cursor(row: Row) -> str:
    return f"{float(row['disagreement'])!r}:{row['scenario_id']}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise InputError(f"not a page cursor: {cursor[:80]!r}")
    try:
        return float(match.group(1)), match.group(2)
    except ValueError:
        raise InputError(f"not a page cursor: {cursor[:80]!r}") from None


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# the filters that, when given, add one condition on a parameter named after the filter
_BOUND_FILTERS = {
    "d_min": "d.disagreement >= :d_min",
    "d_max": "d.disagreement <= :d_max",
    "generator": "s.generator = :generator",
    "value": "(p.value1 = :value OR p.value2 = :value)",
    "refusal_type": "EXISTS (SELECT 1 FROM refusal_types r WHERE r.scenario_id = d.scenario_id "
    "AND r.refusal_type = :refusal_type)",
}


def _list_sql(f: ScenarioFilter, after: tuple[float, str] | None) -> tuple[str, dict[str, Any]]:
    clauses = ["d.model_set = :model_set"]
    params: dict[str, Any] = {"model_set": f.model_set}
    if after is not None:
        comparison = "<" if f.order == "desc" else ">"
        clauses.append(f"(d.disagreement, d.scenario_id) {comparison} (:after_d, :after_id)")
        params |= {"after_d": after[0], "after_id": after[1]}
    if f.selection != ALL_SCENARIOS:
        clauses.append(
            "EXISTS (SELECT 1 FROM selection_members m "
            "WHERE m.selection = :selection AND m.scenario_id = d.scenario_id)"
        )
        params["selection"] = f.selection
    for name, condition in _BOUND_FILTERS.items():
        given = getattr(f, name)
        if given is not None:
            clauses.append(condition)
            params[name] = given
    if f.level is not None:
        clauses.append("d.high" if f.level == "high" else "NOT d.high")
    if f.topic is not None:
        # the column name comes from the fixed topic list, never from the request
        clauses.append(
            "EXISTS (SELECT 1 FROM topic_labels t WHERE t.scenario_id = d.scenario_id "
            f"AND t.{TOPIC_COLUMNS[f.topic]})"
        )
    if f.verdicts is not None:
        clauses.append(VERDICT_PATTERNS[f.verdicts][1])
    if f.search:
        clauses.append("s.query ILIKE :search")
        params["search"] = _like(f.search)
    direction = "DESC" if f.order == "desc" else "ASC"
    sql = (
        "SELECT d.scenario_id, d.model_set, d.disagreement, d.high, d.members, "
        "s.variant, s.generator, s.query, s.pair_id, p.value1, p.value2 "
        "FROM disagreement d "
        "JOIN scenarios s ON s.scenario_id = d.scenario_id "
        "JOIN value_pairs p ON p.pair_id = s.pair_id "
        f"WHERE {' AND '.join(clauses)} "
        f"ORDER BY d.disagreement {direction}, d.scenario_id {direction} "
        "LIMIT :limit"
    )
    return sql, params


async def list_scenarios(
    engine: AsyncEngine, f: ScenarioFilter, *, cursor: str | None = None, limit: int = 50
) -> Page:
    """One page of scenarios in D order (highest first unless `order` is asc)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"page size must be between 1 and {MAX_PAGE}, not {limit}")
    after = decode_cursor(cursor) if cursor else None
    sql, params = _list_sql(f, after)
    rows = await _rows(engine, sql, {**params, "limit": limit + 1})
    if len(rows) > limit:
        return Page(rows[:limit], encode_cursor(rows[limit - 1]))
    return Page(rows, None)


def explain_list(f: ScenarioFilter, cursor: str | None = None) -> tuple[str, dict[str, Any]]:
    """The list's statement and parameters, for EXPLAIN in the benchmark."""
    sql, params = _list_sql(f, decode_cursor(cursor) if cursor else None)
    return sql, {**params, "limit": 51}


async def _rows(engine: AsyncEngine, sql: str, params: dict[str, Any]) -> list[Row]:
    async with reading(engine) as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


_SCENARIO = """
SELECT s.scenario_id, s.pair_id, s.variant, s.generator, s.prompt_version, s.query, s.created_at,
       p.value1, p.value2, p.taxonomy_version
FROM scenarios s JOIN value_pairs p ON p.pair_id = s.pair_id
WHERE s.scenario_id = :id
"""

_ANSWERS = """
SELECT r.response_id, r.model_key, m.family, r.text, r.thinking, r.created_at,
       c.classifier, c.value1_position, c.value1_confidence, c.value1_reasoning,
       c.value2_position, c.value2_confidence, c.value2_reasoning,
       t.refusal_type, t.refusal, t.reasoning AS refusal_reasoning
FROM responses r
JOIN models m ON m.model_key = r.model_key
LEFT JOIN classifications c ON c.response_id = r.response_id
LEFT JOIN refusal_types t ON t.response_id = r.response_id
WHERE r.scenario_id = :id
ORDER BY m.family, r.model_key
"""

_VERDICTS = """
SELECT v.verdict_id, v.response_id, v.judge, v.spec_id, v.spec_version, v.decision, v.reasoning,
       coalesce(
           (SELECT json_agg(json_build_object('anchor', c.anchor, 'title', ss.title)
                            ORDER BY c.rank)
            FROM verdict_citations c
            LEFT JOIN spec_sections ss
              ON ss.spec_id = v.spec_id AND ss.spec_version = v.spec_version
             AND ss.anchor = c.anchor
            WHERE c.verdict_id = v.verdict_id),
           '[]'::json) AS citations
FROM verdicts v
WHERE v.scenario_id = :id
ORDER BY v.spec_id, v.judge
"""


async def scenario_detail(engine: AsyncEngine, scenario_id: str) -> Row | None:
    """Everything stored about one scenario, or None when there is no such scenario."""
    found = await _rows(engine, _SCENARIO, {"id": scenario_id})
    if not found:
        return None
    scenario = found[0]
    params = {"id": scenario_id, "pair": scenario["pair_id"]}
    answers = await _rows(engine, _ANSWERS, params)
    verdicts = await _rows(engine, _VERDICTS, params)
    distinctive = await _rows(
        engine,
        "SELECT response_id, value FROM distinctive_values WHERE scenario_id = :id "
        "ORDER BY response_id, rank",
        params,
    )
    outliers = await _rows(
        engine,
        "SELECT model_set, model_key, value1_outlier, value2_outlier FROM outlier_checks "
        "WHERE scenario_id = :id AND (value1_outlier OR value2_outlier)",
        params,
    )
    by_response: dict[str, list[Row]] = defaultdict(list)
    for v in verdicts:
        by_response[v["response_id"]].append(v)
    values: dict[str, list[str]] = defaultdict(list)
    for row in distinctive:
        values[row["response_id"]].append(row["value"])
    marks: dict[str, list[str]] = defaultdict(list)
    for o in outliers:
        sides = [s for s in ("value1", "value2") if o[f"{s}_outlier"]]
        marks[o["model_key"]].append(f"{o['model_set']} ({', '.join(sides)})")
    for answer in answers:
        answer["verdicts"] = by_response.get(answer["response_id"], [])
        answer["distinctive_values"] = values.get(answer["response_id"], [])
        answer["outlier_in"] = marks.get(answer["model_key"], [])
    spectra = await _rows(
        engine,
        "SELECT model_key, value1_spectrum, value2_spectrum FROM spectra WHERE pair_id = :pair",
        params,
    )
    return {
        **scenario,
        "variants": await _rows(
            engine,
            "SELECT scenario_id, variant, generator, query FROM scenarios WHERE pair_id = :pair "
            "ORDER BY CASE variant WHEN 'neutral' THEN 0 WHEN 'value1' THEN 1 ELSE 2 END",
            params,
        ),
        "spectrum": spectra[0] if spectra else None,
        "disagreement": await _rows(
            engine,
            "SELECT model_set, members, value1_std, value2_std, disagreement, high, computed_at "
            "FROM disagreement WHERE scenario_id = :id ORDER BY model_set",
            params,
        ),
        "topics": [
            r["topic"]
            for r in await _rows(
                engine, "SELECT topic FROM scenario_topics WHERE scenario_id = :id", params
            )
        ],
        "answers": answers,
    }


async def model_profile(engine: AsyncEngine, model_key: str, selection: str) -> Row | None:
    """One model next to the rest of its family: refusal profile, outliers, verdict rates and
    each judge's flag rate on it, from the same views as the report."""
    found = await _rows(
        engine,
        "SELECT model_key, family, active, registered_at FROM models WHERE model_key = :key",
        {"key": model_key},
    )
    if not found:
        return None
    model = found[0]
    family = [
        r["model_key"]
        for r in await _rows(
            engine,
            "SELECT model_key FROM models WHERE family = :family ORDER BY model_key",
            {"family": model["family"]},
        )
    ]
    params = {"keys": family, "selection": selection, "key": model_key}
    in_family = "selection = :selection AND model_key = ANY(:keys)"
    return {
        **model,
        "family_members": family,
        "refusals": await _rows(
            engine,
            f"SELECT * FROM figure4_refusal_types WHERE {in_family} "
            "ORDER BY model_set, scenarios, model_key",
            params,
        ),
        "outliers": await _rows(
            engine,
            f"SELECT * FROM figure6_outliers WHERE {in_family} ORDER BY model_set, model_key",
            params,
        ),
        "compliance": await _rows(
            engine,
            f"SELECT * FROM compliance_by_model WHERE {in_family} "
            "ORDER BY spec_id, spec_version, model_key",
            params,
        ),
        "judges": await _rows(
            engine,
            "SELECT * FROM judge_model_flags WHERE selection = :selection AND model_key = :key "
            "ORDER BY spec_id, spec_version, judge",
            params,
        ),
    }
