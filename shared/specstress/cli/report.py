"""`specstress report`: one subcommand per table of `analysis.reports.REPORTS`, and `html`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from specstress.analysis import ALL_SCENARIOS, REPORTS, OutputFormat, build_report, render
from specstress.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    SelectionOption,
    console,
    load,
    run_async,
)
from specstress.report.html import DEFAULT_EXPLORER_URL, describe, write_report

__all__ = ["report_app"]

report_app = typer.Typer(
    no_args_is_help=True,
    help="The paper's tables and figures from the database: one table as text, CSV or JSON, "
    "or every figure in one HTML file (`report html`).",
)

ModelSetOption = Annotated[str | None, typer.Option("--model-set", help="only this model set")]
SpecOption = Annotated[str | None, typer.Option("--spec", help="only this spec id")]
SampleOption = Annotated[int, typer.Option("--n", min=1, help="Table 2 sample size per subset")]


def _table_command(name: str) -> Callable[..., None]:
    def command(
        *,
        config: ConfigOption = DEFAULT_CONFIG,
        model_set: ModelSetOption = None,
        selection: SelectionOption = ALL_SCENARIOS,
        spec: SpecOption = None,
        n: SampleOption = 1000,
        output: Annotated[
            OutputFormat, typer.Option("--format", help="table, csv or json")
        ] = OutputFormat.table,
    ) -> None:
        cfg = load(config)
        rows = run_async(
            build_report(cfg, name, selection=selection, model_set=model_set, spec_id=spec, n=n)
        )
        typer.echo(render(rows, output, f"{name}: {REPORTS[name].description}"), nl=False)

    return command


for _name, _report in REPORTS.items():
    report_app.command(_name, help=_report.description)(_table_command(_name))


@report_app.command("html")
def html(
    *,
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write")],
    config: ConfigOption = DEFAULT_CONFIG,
    model_set: ModelSetOption = None,
    selection: SelectionOption = ALL_SCENARIOS,
    spec: SpecOption = None,
    n: SampleOption = 1000,
    explorer_url: Annotated[
        str, typer.Option("--explorer-url", help="where `specstress serve` runs, for links")
    ] = DEFAULT_EXPLORER_URL,
) -> None:
    """Every figure and table in one self-contained HTML file that opens offline."""
    cfg = load(config)
    page = run_async(
        write_report(
            cfg,
            out,
            config_name=config.name,
            selection=selection,
            model_set=model_set,
            spec_id=spec,
            n=n,
            explorer_url=explorer_url,
        )
    )
    console.print(f"wrote {out}: {describe(page)}")
