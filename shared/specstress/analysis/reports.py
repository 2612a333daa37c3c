"""`specstress report <table>`: the paper's tables and figures, and the judge-ensemble
statistics, printed from the database as a table, CSV or JSON.

Each report reads a view (see migrations 0007 and 0009); only the judge agreement measures
(Fleiss' kappa, Krippendorff's alpha) are computed here, from the stored verdicts. Before
reading, the config's model sets, vendors, outlier settings and spec sections are mirrored into
the database, so the views answer for the config given.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.analysis import queries as analysis
from specstress.analysis.queries import ALL_SCENARIOS, Filters
from specstress.config import Config, load_config
from specstress.db import create_engine, store
from specstress.errors import InputError
from specstress.method import ensemble_statistics
from specstress.pipeline import connect, publish
from specstress.pipeline.compliance import verdict_requests

__all__ = [
    "REPORTS",
    "OutputFormat",
    "Report",
    "Rows",
    "build_report",
    "judge_sample",
    "render",
    "request_sample_verdicts",
]

Rows = list[dict[str, Any]]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@dataclass(frozen=True)
class Report:
    description: str
    read: Callable[[AsyncEngine, Filters, int], Awaitable[Rows]]


def _view(name: str) -> Report:
    view = analysis.VIEW_REPORTS[name]

    async def read(engine: AsyncEngine, filters: Filters, _n: int) -> Rows:
        return await analysis.view_report(engine, view, filters)

    return Report(view.description, read)


async def _judge_agreement(engine: AsyncEngine, filters: Filters, _n: int) -> Rows:
    rows: Rows = []
    for (spec_id, spec_version), (judges, profiles) in sorted(
        (await analysis.judge_profiles(engine, filters)).items()
    ):
        stats = ensemble_statistics(profiles, judges)
        # (statistic, basis, answers it rests on, value)
        found: list[tuple[str, str, int, float | None]] = [
            ("flag rate, majority rule", "flagged", stats.complete, stats.majority_flag_rate),
            ("flag rate, any-judge rule", "flagged", stats.complete, stats.any_flag_rate),
            ("Fleiss' kappa", "flagged", stats.complete, stats.fleiss_kappa_flags),
            ("Fleiss' kappa", "decision", stats.complete, stats.fleiss_kappa_decisions),
            ("Krippendorff's alpha", "flagged", stats.answers, stats.krippendorff_alpha_flags),
            ("Krippendorff's alpha", "decision", stats.answers, stats.krippendorff_alpha_decisions),
        ]
        rows += [
            {
                "selection": filters.selection,
                "spec_id": spec_id,
                "spec_version": spec_version,
                "judges": judges,
                "statistic": statistic,
                "basis": basis,
                "answers": answers,
                "value": value,
            }
            for statistic, basis, answers, value in found
        ]
    return rows


async def _table2(engine: AsyncEngine, filters: Filters, n: int) -> Rows:
    return await analysis.table2(engine, filters, n)


async def _disagreement(engine: AsyncEngine, filters: Filters, _n: int) -> Rows:
    return await analysis.disagreement_summary(engine, filters)


async def _histogram(engine: AsyncEngine, filters: Filters, _n: int) -> Rows:
    return await analysis.disagreement_histogram(engine, filters)


async def _costs(engine: AsyncEngine, _filters: Filters, _n: int) -> Rows:
    return await analysis.llm_costs(engine)


REPORTS: dict[str, Report] = {
    "table2": Report(
        "all-family-fail rate (frequent non-compliance) on deterministic samples of n scenarios "
        "of each subset: every scenario, and each model set's high-disagreement scenarios",
        _table2,
    ),
    "figure2": Report(
        analysis.VIEW_REPORTS["figure2"].description
        + "; by default only the set made of the spec's own families, when there is one",
        _view("figure2").read,
    ),
    "figure4": _view("figure4"),
    "figure4-topics": _view("figure4-topics"),
    "figure6": _view("figure6"),
    "figure10": _view("figure10"),
    "figure11": _view("figure11"),
    "disagreement": Report(
        "scenarios scored, high-disagreement scenarios and mean D per model set", _disagreement
    ),
    "d-histogram": Report(
        "scenarios per 0.1-wide bin of D for each model set, and how many are high-disagreement",
        _histogram,
    ),
    "costs": Report(
        "LLM calls, failed calls, tokens and cost per pipeline stage and model (every call)",
        _costs,
    ),
    "compliance": _view("compliance"),
    "judges": _view("judges"),
    "judge-pairs": _view("judge-pairs"),
    "judge-agreement": Report(
        "judge-ensemble statistics: flag rate under the majority and any-judge rules, Fleiss' "
        "kappa (answers every judge rated) and Krippendorff's alpha (nominal), on flagged-or-not "
        "and on the three decisions; per-judge rates and pairwise agreement are `judges` and "
        "`judge-pairs`",
        _judge_agreement,
    ),
    "self-preference": _view("self-preference"),
    "citations": _view("citations"),
}


def check_filters(config: Config, name: str, filters: Filters) -> Report:
    """The report called `name`; InputError names a bad report, model set or spec."""
    report = REPORTS.get(name)
    if report is None:
        raise InputError(f"unknown report {name!r}; choose one of: {', '.join(REPORTS)}")
    if filters.model_set is not None and filters.model_set not in config.model_sets:
        raise InputError(
            f"no model set {filters.model_set!r} in the config; "
            f"known: {', '.join(config.model_sets)}"
        )
    if filters.spec_id is not None and filters.spec_id not in {s.id for s in config.specs}:
        raise InputError(f"no spec {filters.spec_id!r} in the config")
    return report


async def read_report(
    engine: AsyncEngine, config: Config, name: str, filters: Filters, n: int = 1000
) -> Rows:
    """One report as the config defines it, without mirroring the config first (so a
    SELECT-only role can read it once `specstress init` or `report` has mirrored it)."""
    report = check_filters(config, name, filters)
    if not await analysis.known_selection(engine, filters.selection):
        raise InputError(f"no selection named {filters.selection!r} (or it holds no scenarios)")
    rows = await report.read(engine, filters, n)
    if name == "figure2" and filters.model_set is None:
        # the paper bins by the D of the spec's own family: that set, when the config has one
        family_sets = _spec_family_sets(config)
        rows = [
            r
            for r in rows
            if not family_sets.get(r["spec_id"]) or r["model_set"] in family_sets[r["spec_id"]]
        ]
    return rows


async def build_report(
    config: Config,
    name: str,
    *,
    selection: str = ALL_SCENARIOS,
    model_set: str | None = None,
    spec_id: str | None = None,
    n: int = 1000,
) -> Rows:
    """Mirror the config, then read one report; InputError names a bad argument."""
    filters = Filters(selection=selection, model_set=model_set, spec_id=spec_id)
    check_filters(config, name, filters)
    engine = create_engine(config.database_url, pool_size=2)
    try:
        await analysis.sync_config(engine, config)
        return await read_report(engine, config, name, filters, n)
    finally:
        await engine.dispose()


def _spec_family_sets(config: Config) -> dict[str, set[str]]:
    """Spec id -> the model sets made of exactly the families the spec governs."""
    return {
        spec.id: {
            name
            for name, members in config.model_sets.items()
            if set(members) == {f"family:{f}" for f in spec.families}
        }
        for spec in config.specs
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render(rows: Rows, output: OutputFormat, title: str = "") -> str:
    """The rows as an aligned table, CSV (header first) or a JSON array of objects."""
    if output is OutputFormat.json:
        return json.dumps(rows, indent=2, default=str)
    if output is OutputFormat.csv:
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
        return buffer.getvalue()
    heading = f"{title}\n" if title else ""
    if not rows:
        return f"{heading}(no rows)\n"
    console = Console(width=240, record=True, file=io.StringIO())
    table = Table(*rows[0])
    for r in rows:
        table.add_row(*(_cell(v) for v in r.values()))
    console.print(table)
    return heading + console.export_text()


async def request_sample_verdicts(
    config: Config, n: int, selection: str = ALL_SCENARIOS
) -> tuple[int, int]:
    """Ask the judges to rule on every governed answer of Table 2's random sample of n
    scenarios (the pipeline itself judges only flagged scenarios). Returns (scenarios, requests
    published as new); rulings that exist already cost nothing: the judge looks them up."""
    engine = create_engine(config.database_url, pool_size=2)
    try:
        if not await analysis.known_selection(engine, selection):
            raise InputError(f"no selection named {selection!r} (or it holds no scenarios)")
        scenarios = await analysis.random_sample(engine, selection, n)
        requests = [
            request
            for scenario_id in scenarios
            for request in verdict_requests(
                config, await store.scenario_responses(engine, scenario_id)
            )
        ]
    finally:
        await engine.dispose()
    client = await connect(config.nats_url, "specstress-cli")
    try:
        js = client.jetstream()
        published = 0
        for request in requests:
            published += await publish(js, request)
    finally:
        await client.close()
    return len(scenarios), published


def judge_sample(
    *,
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="SPECSTRESS_CONFIG", help="YAML config file")
    ] = Path("specstress.yaml"),
    n: Annotated[int, typer.Option("--n", min=1, help="sample size")] = 1000,
    selection: Annotated[
        str, typer.Option("--selection", help="a named selection of scenarios; * = every one")
    ] = ALL_SCENARIOS,
) -> None:
    """Have the judges rule on Table 2's random sample of n scenarios."""
    try:
        cfg = load_config(config)
        scenarios, published = asyncio.run(request_sample_verdicts(cfg, n, selection))
    except InputError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    typer.echo(f"{scenarios} sampled scenarios: {published} verdict requests published")
