"""`specstress report html`: every figure of the report in one HTML file that opens offline.

Plotly draws the figures: its Python wheel carries plotly.js, which is inlined once, so the file
needs no network and no other download; each figure's data sits in the page as JSON (escaped so
that no stored text can close its script element) and is drawn when the page loads. The rows
come from `analysis.reports.read_report`, the same reads as `specstress report TABLE`, and the
highest-D list from the explorer's own list query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io
from jinja2 import Environment, PackageLoader, select_autoescape
from plotly.offline import get_plotlyjs
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.analysis import ALL_SCENARIOS, Filters, ScenarioFilter, list_scenarios
from specstress.analysis import queries as analysis
from specstress.analysis.reports import check_filters, read_report
from specstress.analysis.summary import data_date
from specstress.config import Config
from specstress.db import create_engine
from specstress.report import figures as fig
from specstress.report.figures import Figure, TableData

__all__ = [
    "DEFAULT_EXPLORER_URL",
    "ReportPage",
    "collect",
    "describe",
    "render_html",
    "write_report",
]

DEFAULT_EXPLORER_URL = "http://127.0.0.1:8780"
TOP_SCENARIOS = 20


@dataclass(frozen=True)
class ReportPage:
    config_name: str
    data_date: datetime | None
    generated_at: datetime
    filters: Filters
    main_set: str
    figures: list[Figure]

    @property
    def with_data(self) -> int:
        return sum(f.has_data for f in self.figures)


async def collect(
    engine: AsyncEngine,
    config: Config,
    *,
    config_name: str,
    filters: Filters,
    n: int = 1000,
    explorer_url: str = DEFAULT_EXPLORER_URL,
) -> ReportPage:
    """Read every report table once and turn each into its figure (nothing is written)."""
    main_set = filters.model_set or next(iter(config.model_sets))

    async def read(name: str) -> list[dict[str, Any]]:
        return await read_report(engine, config, name, filters, n)

    threshold = config.disagreement.threshold
    figure4 = await read("figure4")
    figures = [
        fig.d_histogram_figure(await read("d-histogram"), threshold),
        fig.d_counts_figure(await read("disagreement"), threshold),
        *fig.figure2_figures(await read("figure2")),
        fig.figure4_types_figure(figure4, "all", main_set),
        fig.figure4_types_figure(figure4, "high", main_set),
        fig.figure4_topics_figure(await read("figure4-topics"), main_set),
        fig.figure6_figure(await read("figure6")),
        fig.figure10_figure(await read("figure10")),
        fig.figure11_figure(await read("figure11")),
        fig.table2_figure(await read("table2")),
        fig.judge_flags_figure(await read("judges")),
        fig.judge_pairs_figure(await read("judge-pairs")),
        fig.judge_agreement_table(await read("judge-agreement")),
        fig.self_preference_figure(await read("self-preference")),
        fig.cost_figure(await read("costs")),
        await _top_scenarios(engine, filters, main_set, explorer_url),
    ]
    return ReportPage(
        config_name=config_name,
        data_date=await data_date(engine),
        generated_at=datetime.now(UTC),
        filters=filters,
        main_set=main_set,
        figures=figures,
    )


async def _top_scenarios(
    engine: AsyncEngine, filters: Filters, model_set: str, explorer_url: str
) -> Figure:
    key = "top-scenarios"
    title = f"The {TOP_SCENARIOS} highest-D scenarios (set {model_set})"
    guide = (
        "Where the models disagree most: open one in the explorer (`specstress serve`) to read "
        "every answer side by side with its positions and verdicts."
    )
    page = await list_scenarios(
        engine,
        ScenarioFilter(model_set=model_set, selection=filters.selection),
        limit=TOP_SCENARIOS,
    )
    if not page.rows:
        return Figure(key, title, guide, "n = 0", empty="no scenario has been scored yet")
    base = explorer_url.rstrip("/")
    table = TableData(
        ["scenario", "D", "variant", "value 1", "value 2", "generator", "query"],
        [
            [
                r["scenario_id"][:12],
                f"{float(r['disagreement']):.2f}",
                r["variant"],
                r["value1"],
                r["value2"],
                r["generator"],
                _excerpt(r["query"]),
            ]
            for r in page.rows
        ],
        links=[f"{base}/scenario/{r['scenario_id']}?model_set={model_set}" for r in page.rows],
    )
    return Figure(key, title, guide, f"n = {len(page.rows)} scenarios", table=table)


def _excerpt(query: str, limit: int = 160) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plot_json(spec: dict[str, Any]) -> str:
    """The figure as JSON that is safe inside a script element: plotly validates every
    property, and <, > and & are escaped so no stored text can end the element."""
    encoded = str(plotly.io.to_json(go.Figure(spec), validate=True))
    return encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("specstress.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(page: ReportPage) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        page=page,
        plots={f.key: plot_json(f.plot) for f in page.figures if f.plot is not None},
        plotly_js=get_plotlyjs(),
        selection_label="every scenario"
        if page.filters.selection == ALL_SCENARIOS
        else f"selection {page.filters.selection}",
    )


async def write_report(
    config: Config,
    out: Path,
    *,
    config_name: str,
    selection: str = ALL_SCENARIOS,
    model_set: str | None = None,
    spec_id: str | None = None,
    n: int = 1000,
    explorer_url: str = DEFAULT_EXPLORER_URL,
) -> ReportPage:
    """Mirror the config, read every report and write the page to `out` (whole or not at
    all: it is written beside `out` and renamed)."""
    filters = Filters(selection=selection, model_set=model_set, spec_id=spec_id)
    check_filters(config, "figure2", filters)
    engine = create_engine(config.database_url, pool_size=2)
    try:
        await analysis.sync_config(engine, config)
        page = await collect(
            engine,
            config,
            config_name=config_name,
            filters=filters,
            n=n,
            explorer_url=explorer_url,
        )
    finally:
        await engine.dispose()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(render_html(page), encoding="utf-8")
    partial.replace(out)
    return page


def describe(page: ReportPage) -> str:
    """One line for the console: what the page holds."""
    empty = [f.title for f in page.figures if not f.has_data]
    found = f"{page.with_data} figures with data"
    return f"{found}; without data: {'; '.join(empty)}" if empty else found
