"""What every command shares: the console, the config option and the way errors end a command."""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, TypeVar

import nats.errors
import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import DBAPIError

from specstress.config import Config, load_config
from specstress.errors import InputError
from specstress.local import ServerStartError
from specstress.pipeline import eventloop

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigOption",
    "SelectionOption",
    "console",
    "describe_error",
    "fail",
    "load",
    "print_error",
    "run_async",
]

console = Console()
if not console.is_terminal:
    # logs and CI captures are read wide; rich would otherwise wrap tables at 80 columns
    console.width = 132
errors = Console(stderr=True)

_REACH = (
    "check that the server runs and that NATS_URL / DATABASE_URL (or the config's nats_url / "
    "database_url) point at it"
)

T = TypeVar("T")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="SPECSTRESS_CONFIG", help="YAML config file", show_default=True
    ),
]
DEFAULT_CONFIG = Path("specstress.yaml")
SelectionOption = Annotated[
    str, typer.Option("--selection", help="a named selection of scenarios; * = every one")
]


def print_error(message: object) -> None:
    """One line on stderr, never wrapped, whatever brackets the message holds."""
    errors.print(f"[red]error:[/red] {escape(str(message))}", soft_wrap=True)


def fail(message: object) -> typer.Exit:
    """Print one error line; the caller raises what this returns (exit code 2)."""
    print_error(message)
    return typer.Exit(2)


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def describe_error(exc: BaseException) -> str | None:
    """One line naming a problem that a user can cause or meet, and what to do about it; None
    for anything else (a fault of the program, whose traceback is what to report)."""
    if isinstance(exc, InputError | ServerStartError):
        # a ServerStartError's first line says where its log is; the rest is that log's end
        return _first_line(str(exc))
    if isinstance(exc, typer.TyperException):
        # click's errors (typer keeps its own copy): a usage error knows its command
        context = getattr(exc, "ctx", None)
        command = getattr(context, "command_path", "specstress")
        return f"{exc.format_message().rstrip('.')}; see `{command} --help`"
    if isinstance(exc, nats.errors.Error):
        return f"NATS: {_first_line(str(exc)) or type(exc).__name__}; {_REACH}"
    if isinstance(exc, DBAPIError):
        said = _first_line(str(exc.orig)) or type(exc.orig).__name__
        return (
            f"PostgreSQL: {said}; check DATABASE_URL (or the config's database_url), and that "
            "`specstress init` ran with this config"
        )
    if isinstance(exc, PermissionError):
        where = f": {exc.filename}" if exc.filename else ""
        return (
            f"permission denied{where}; run as a user who may use it, or choose a folder of "
            "your own (see --help for the options that name folders)"
        )
    if isinstance(exc, ConnectionError | socket.gaierror):
        return f"cannot connect: {exc.strerror or exc}; {_REACH}"
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    if isinstance(exc, TimeoutError):
        return _first_line(str(exc)) or f"timed out; {_REACH}"
    return None


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine; an InputError becomes one error line and exit code 2."""

    async def wrapper() -> T:
        return await coro

    try:
        return eventloop.run(wrapper())
    except InputError as exc:
        raise fail(exc) from None


def load(path: Path) -> Config:
    """The config at path, or one error line and exit code 2."""
    try:
        return load_config(path)
    except InputError as exc:
        raise fail(exc) from None
