"""What every command shares: the console, the config option and the way errors end a command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from specstress.config import Config, load_config
from specstress.errors import InputError

__all__ = ["DEFAULT_CONFIG", "ConfigOption", "console", "fail", "load", "run_async"]

console = Console()
if not console.is_terminal:
    # logs and CI captures are read wide; rich would otherwise wrap tables at 80 columns
    console.width = 132

T = TypeVar("T")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", envvar="SPECSTRESS_CONFIG", help="YAML config file", show_default=True
    ),
]
DEFAULT_CONFIG = Path("specstress.yaml")


def fail(message: object) -> typer.Exit:
    """Print one error line; the caller raises what this returns (exit code 2)."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def run_async(coro: Awaitable[T]) -> T:
    """Run a coroutine; an InputError becomes one error line and exit code 2."""

    async def wrapper() -> T:
        return await coro

    try:
        return asyncio.run(wrapper())
    except InputError as exc:
        raise fail(exc) from None


def load(path: Path) -> Config:
    """The config at path, or one error line and exit code 2."""
    try:
        return load_config(path)
    except InputError as exc:
        raise fail(exc) from None
