"""The `specstress` command line: every command group, registered on one app."""

from __future__ import annotations

import os
import sys

import typer

from specstress.analysis.reports import judge_sample
from specstress.cli.commands import app, models_app
from specstress.cli.common import describe_error, print_error
from specstress.cli.dataset import export_command, import_command
from specstress.cli.dead_letters import dead_letters_app
from specstress.cli.demo import demo
from specstress.cli.ops import ops_app
from specstress.cli.report import report_app
from specstress.cli.serve import serve
from specstress.cli.watch import models_compare, models_discovered

__all__ = ["app", "main"]

app.add_typer(ops_app, name="ops")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(report_app, name="report")
app.command()(serve)
app.command("judge-sample")(judge_sample)
app.command()(demo)
app.command("export")(export_command)
app.command("import")(import_command)
models_app.command("compare")(models_compare)
models_app.command("discovered")(models_discovered)

DEBUG_FLAG = "--debug"
DEBUG_ENV = "SPECSTRESS_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Run one command. An error a user can cause or meet ends it with one line naming the
    problem and what to do, and exit code 2; any other error with one line and exit code 1.
    `--debug` (anywhere on the line) or SPECSTRESS_DEBUG=1 shows the traceback instead."""
    args = sys.argv[1:] if argv is None else argv
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [arg for arg in args if arg != DEBUG_FLAG]
    try:
        # not standalone: click hands usage errors here instead of printing a boxed panel
        code = app(args=args, prog_name="specstress", standalone_mode=False)
    except typer.TyperException as exc:
        # wrong arguments: a traceback would not help. A group given no command has printed
        # its help already, and its error has no message of its own.
        if exc.format_message():
            print_error(describe_error(exc))
        sys.exit(2)
    except Exception as exc:
        if debug:
            raise
        message = describe_error(exc)
        if message is not None:
            print_error(message)
            sys.exit(2)
        detail = str(exc).strip().split("\n", 1)[0]
        print_error(
            f"unexpected {type(exc).__name__}: {detail}; rerun with {DEBUG_FLAG} "
            f"(or {DEBUG_ENV}=1) for the traceback, and report it"
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
