"""The `specstress` command line: every command group, registered on one app."""

from __future__ import annotations

from specstress.analysis.reports import judge_sample
from specstress.cli.commands import app
from specstress.cli.demo import demo
from specstress.cli.ops import ops_app
from specstress.explorer.cli import serve
from specstress.report.cli import report_app

__all__ = ["app", "main"]

app.add_typer(ops_app, name="ops")
app.add_typer(report_app, name="report")
app.command()(serve)
app.command("judge-sample")(judge_sample)
app.command()(demo)


def main() -> None:
    app()
