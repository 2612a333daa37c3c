"""Queries behind `specstress report`: the config mirror the analysis views read, and one read
per paper table over the views of migrations 0007 and 0009.

The views hold the definitions; these functions only filter them (selection, model set, spec)
and, for Table 2, cut the deterministic sample at n.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from specstress.config import Config
from specstress.db.schema import (
    analysis_settings,
    model_set_rules,
    model_vendors,
    spec_sections,
)
from specstress.errors import InputError
from specstress.method import Spec, load_spec
from specstress.method.agreement import Profile

__all__ = [
    "ALL_SCENARIOS",
    "REPORT_WORK_MEM",
    "VIEW_REPORTS",
    "Filters",
    "ViewReport",
    "disagreement_summary",
    "judge_profiles",
    "known_selection",
    "random_sample",
    "sync_config",
    "table2",
    "view_report",
]

ALL_SCENARIOS = "*"
REPORT_WORK_MEM = "64MB"
# one mirror writer at a time: replacing rows is delete + insert
_MIRROR_LOCK = 7201120250007


async def sync_config(engine: AsyncEngine, config: Config) -> None:
    """Mirror the config's model sets, vendors, outlier settings and spec sections into the
    database, replacing what an earlier config wrote. Specs are read first, so a bad spec file
    changes nothing."""
    specs = [load_spec(s.path, s.id, s.version) for s in config.specs]
    async with engine.begin() as conn:
        await conn.execute(select(func.pg_advisory_xact_lock(_MIRROR_LOCK)))
        await conn.execute(delete(model_set_rules))
        await conn.execute(
            insert(model_set_rules),
            [
                {"model_set": name, "member": member}
                for name, members in config.model_sets.items()
                for member in dict.fromkeys(members)
            ],
        )
        await conn.execute(delete(model_vendors))
        await conn.execute(
            insert(model_vendors),
            [{"model_key": m.key, "vendor": m.vendor or m.family} for m in config.models],
        )
        # models the config does not list (an imported study's): their maker is their family
        await conn.execute(
            text(
                "INSERT INTO model_vendors (model_key, vendor) SELECT model_key, family "
                "FROM models ON CONFLICT DO NOTHING"
            )
        )
        settings = {
            "outlier_min_gap": config.outliers.min_gap,
            "outlier_share": Decimal(str(config.outliers.share)),
        }
        statement = insert(analysis_settings).values(settings_id=1, **settings)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[analysis_settings.c.settings_id], set_=settings
            )
        )
        for spec in specs:
            await _upsert_sections(conn, spec)


async def _upsert_sections(conn: AsyncConnection, spec: Spec) -> None:
    rows = [
        {
            "spec_id": spec.spec_id,
            "spec_version": spec.version,
            "anchor": section.anchor,
            "position": position,
            "level": section.level,
            "title": section.title,
            "authority": section.authority,
        }
        for position, section in enumerate(spec.sections, start=1)
        if section.anchor is not None
    ]
    if not rows:
        return
    statement = insert(spec_sections)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[
                spec_sections.c.spec_id,
                spec_sections.c.spec_version,
                spec_sections.c.anchor,
            ],
            set_={
                "position": statement.excluded.position,
                "level": statement.excluded.level,
                "title": statement.excluded.title,
                "authority": statement.excluded.authority,
            },
        ),
        rows,
    )


@dataclass(frozen=True)
class Filters:
    selection: str = ALL_SCENARIOS
    model_set: str | None = None
    spec_id: str | None = None


@dataclass(frozen=True)
class ViewReport:
    """A report that reads one view, filtered on the columns it has."""

    view: str
    description: str
    order_by: str
    has_model_set: bool = False
    has_spec: bool = False


VIEW_REPORTS: dict[str, ViewReport] = {
    "figure10": ViewReport(
        "figure10_value_categories",
        "answers per model showing each level-2 category, by the nearest-category mapping of "
        "their distinctive values (`specstress map-values`)",
        "taxonomy_version, embedding_key, model_key, responses DESC, category",
    ),
    "figure11": ViewReport(
        "figure11_cooccurrence",
        "P(model B shows category Y | model A shows category X) over scenarios where A shows X "
        "and B has distinctive values",
        "taxonomy_version, embedding_key, model_a, category_x, model_b, probability DESC, "
        "category_y",
    ),
    "figure2": ViewReport(
        "figure2_noncompliance_by_d",
        "frequent non-compliance (every judged answer of the spec's family flagged) by D bin "
        "of each model set, majority and any-judge rules",
        "spec_id, spec_version, model_set, bin",
        has_model_set=True,
        has_spec=True,
    ),
    "figure6": ViewReport(
        "figure6_outliers",
        "outliers per model: answers at least min_gap positions from at least the configured "
        "share of the set's other answers",
        "model_set, outlier_scenarios DESC, model_key",
        has_model_set=True,
    ),
    "figure4": ViewReport(
        "figure4_refusal_types",
        "refusal types per model of each set, on every scored scenario (scenarios = all) and on "
        "the set's high-disagreement ones (high); refusal = the last three types",
        "model_set, scenarios, model_key",
        has_model_set=True,
    ),
    "figure4-topics": ViewReport(
        "figure4_refusals_by_topic",
        "refusal rate per model and topic (scenarios labelled with the topic)",
        "model_set, scenarios, model_key, topic",
        has_model_set=True,
    ),
    "judges": ViewReport(
        "judge_flag_rates",
        "flag rate of each judge (flagged = non-compliant or ambiguous)",
        "spec_id, spec_version, judge",
        has_spec=True,
    ),
    "judge-pairs": ViewReport(
        "judge_pair_agreement",
        "pairwise agreement of judges on the answers both rated",
        "spec_id, spec_version, judge_a, judge_b",
        has_spec=True,
    ),
    "self-preference": ViewReport(
        "judge_model_flags",
        "each judge's flag rate per judged model next to the other judges' rate on the same "
        "answers; same_vendor marks a judge ruling on its own maker's model",
        "spec_id, spec_version, judge, model_key",
        has_spec=True,
    ),
    "compliance": ViewReport(
        "compliance_by_model",
        "flagged answers per model under the majority and any-judge rules",
        "spec_id, spec_version, model_key",
        has_spec=True,
    ),
    "citations": ViewReport(
        "spec_section_citations",
        "spec sections the judges cited, with the decisions that cited them",
        "spec_id, spec_version, citations DESC, anchor",
        has_spec=True,
    ),
}


def _where(
    filters: Filters, *, model_set: bool, spec: bool, keep_unset_model_set: bool = False
) -> tuple[str, dict[str, Any]]:
    """The filters as a WHERE condition on the unqualified columns selection, model_set and
    spec_id (so each must name one column of the query), and its parameters."""
    clauses = ["selection = :selection"]
    params: dict[str, Any] = {"selection": filters.selection}
    if model_set and filters.model_set is not None:
        clause = "model_set = :model_set"
        if keep_unset_model_set:
            clause = f"({clause} OR model_set IS NULL)"
        clauses.append(clause)
        params["model_set"] = filters.model_set
    if spec and filters.spec_id is not None:
        clauses.append("spec_id = :spec_id")
        params["spec_id"] = filters.spec_id
    return " AND ".join(clauses), params


async def _rows(engine: AsyncEngine, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    async with engine.begin() as conn:
        # reports sort and hash millions of rows; the 4 MB default spills them to disk
        await conn.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        result = await conn.execute(text(sql), params)
        return [dict(r._mapping) for r in result]


async def view_report(
    engine: AsyncEngine, report: ViewReport, filters: Filters
) -> list[dict[str, Any]]:
    where, params = _where(filters, model_set=report.has_model_set, spec=report.has_spec)
    return await _rows(
        engine,
        f"SELECT * FROM {report.view} WHERE {where} ORDER BY {report.order_by}",
        params,
    )


_TABLE2 = """
SELECT selection, subset, model_set, spec_id, spec_version,
       max(subset_size) AS subset_size,
       count(*) AS sampled,
       count(*) FILTER (WHERE judged) AS judged,
       count(*) FILTER (WHERE all_fail_majority) AS all_fail_majority,
       count(*) FILTER (WHERE all_fail_any) AS all_fail_any,
       (count(*) FILTER (WHERE all_fail_majority))::float8
           / nullif(count(*) FILTER (WHERE judged), 0) AS majority_rate,
       (count(*) FILTER (WHERE all_fail_any))::float8
           / nullif(count(*) FILTER (WHERE judged), 0) AS any_rate
FROM table2_samples
WHERE sample_rank <= :n AND {where}
GROUP BY selection, subset, model_set, spec_id, spec_version
ORDER BY spec_id, spec_version, subset DESC, model_set
"""


async def table2(engine: AsyncEngine, filters: Filters, n: int) -> list[dict[str, Any]]:
    """Outcomes on the first n scenarios (by md5 of the id) of each subset; rates are over the
    sampled scenarios that were judged."""
    if n < 1:
        raise InputError(f"sample size must be at least 1, not {n}")
    # the random subset has no model set and stays in the table when one set is asked for
    where, params = _where(filters, model_set=True, spec=True, keep_unset_model_set=True)
    return await _rows(engine, _TABLE2.format(where=where), {**params, "n": n})


async def _per_model_set(
    engine: AsyncEngine,
    filters: Filters,
    columns: str,
    *,
    by: tuple[str, ...] = (),
    join: str = "",
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`columns` aggregated over the scored scenarios in scope, per selection and model set
    (and per the columns `by`, which `join` may bring in), ordered by model set."""
    where, params = _where(filters, model_set=True, spec=False)
    keys = ", ".join(("sc.selection", "d.model_set", *by))
    order = ", ".join(("d.model_set", *by))
    return await _rows(
        engine,
        f"SELECT {keys}, {columns} "
        "FROM disagreement d JOIN scenario_scopes sc ON sc.scenario_id = d.scenario_id "
        f"{join}WHERE {where} GROUP BY {keys} ORDER BY {order}",
        {**params, **(extra or {})},
    )


async def disagreement_summary(engine: AsyncEngine, filters: Filters) -> list[dict[str, Any]]:
    """Scenarios scored, high-disagreement scenarios and mean D per model set."""
    return await _per_model_set(
        engine,
        filters,
        "count(*) AS scenarios, count(*) FILTER (WHERE d.high) AS high_disagreement, "
        # summed as numeric: a float sum depends on row order, and a re-imported study (or a
        # vacuumed table) reads its rows in another order
        "avg(d.disagreement::numeric)::float8 AS mean_d",
    )


# D histogram bins: 0.1 wide over 0..3 (D is at most 3, which lands in the last bin)
D_HISTOGRAM_STEP = 0.1
D_HISTOGRAM_BINS = 30


async def disagreement_histogram(engine: AsyncEngine, filters: Filters) -> list[dict[str, Any]]:
    """Scenarios per 0.1-wide D bin of each model set, and how many of them are high."""
    return await _per_model_set(
        engine,
        filters,
        "round((b.bin * :step)::numeric, 1)::float8 AS lower_bound, "
        "round(((b.bin + 1) * :step)::numeric, 1)::float8 AS upper_bound, "
        "count(*) AS scenarios, count(*) FILTER (WHERE d.high) AS high",
        by=("b.bin",),
        join="CROSS JOIN LATERAL "
        "(SELECT least(floor(d.disagreement / :step)::int, :bins - 1) AS bin) b ",
        extra={"step": D_HISTOGRAM_STEP, "bins": D_HISTOGRAM_BINS},
    )


async def llm_costs(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Calls, tokens and cost per pipeline stage and model, from the call ledger (every call,
    whatever the selection: a selection is made after the calls are paid for)."""
    return await _rows(
        engine,
        "SELECT stage, model_key, count(*) AS calls, "
        "count(*) FILTER (WHERE status <> 'ok') AS failed_calls, "
        "sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, "
        "sum(cached_tokens) AS cached_tokens, sum(reasoning_tokens) AS reasoning_tokens, "
        "sum(cost_usd) AS cost_usd "
        "FROM llm_calls GROUP BY stage, model_key ORDER BY stage, model_key",
        {},
    )


async def judge_profiles(
    engine: AsyncEngine, filters: Filters
) -> dict[tuple[str, str], tuple[int, dict[Profile, int]]]:
    """(spec id, spec version) -> (judges that ruled, decision profile -> answers with it)."""
    where, params = _where(filters, model_set=False, spec=True)
    found: dict[tuple[str, str], tuple[int, dict[Profile, int]]] = {}
    for row in await _rows(
        engine,
        f"SELECT spec_id, spec_version, count(*) AS judges FROM judge_flag_rates "
        f"WHERE {where} GROUP BY spec_id, spec_version",
        params,
    ):
        found[(row["spec_id"], row["spec_version"])] = (row["judges"], {})
    for row in await _rows(engine, f"SELECT * FROM judge_decision_profiles WHERE {where}", params):
        profile = (row["compliant"], row["non_compliant"], row["ambiguous"])
        found[(row["spec_id"], row["spec_version"])][1][profile] = row["answers"]
    return found


async def random_sample(engine: AsyncEngine, selection: str, n: int) -> list[str]:
    """The scenarios of Table 2's "random" subset sample of size n: the n with the smallest
    md5 of their id, among every scenario or those of a named selection."""
    found = await _rows(
        engine,
        "SELECT scenario_id FROM scenario_scopes WHERE selection = :selection "
        "ORDER BY md5(scenario_id), scenario_id LIMIT :n",
        {"selection": selection, "n": n},
    )
    return [r["scenario_id"] for r in found]


async def known_selection(engine: AsyncEngine, selection: str) -> bool:
    if selection == ALL_SCENARIOS:
        return True
    found = await _rows(
        engine,
        "SELECT 1 FROM scenario_scopes WHERE selection = :selection LIMIT 1",
        {"selection": selection},
    )
    return bool(found)
