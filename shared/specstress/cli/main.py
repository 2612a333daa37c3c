"""The `specstress` command line: every command group, registered on one app."""

from __future__ import annotations

from specstress.analysis.reports import judge_sample, report
from specstress.cli.commands import app
from specstress.cli.demo import demo
from specstress.cli.ops import ops_app

__all__ = ["app", "main"]

app.add_typer(ops_app, name="ops")
app.command()(report)
app.command("judge-sample")(judge_sample)
app.command()(demo)


def main() -> None:
    app()
