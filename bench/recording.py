"""What every benchmark records with its figures: where the results go and which commit ran."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.jsonl"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], width: int
) -> Console:
    """A benchmark's results as a table on the console, each cell as str() writes it; returns
    the console for what the benchmark prints after it."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console = Console(width=width)
    console.print(table)
    return console


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def git_commit() -> str:
    """The commit measured; "+changes" when the working tree differed from it."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+changes" if changed else commit


def header(benchmark: str, **machine: object) -> dict[str, Any]:
    """The fields every result starts with: which benchmark, commit, time and machine."""
    return {
        "benchmark": benchmark,
        "commit": git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **machine,
        },
    }


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name: field n of proc(5) is at n - 3."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a running process has used so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def record(result: dict[str, Any]) -> None:
    """Append one result to bench/results.jsonl."""
    with RESULTS.open("a") as out:
        out.write(json.dumps(result) + "\n")


def conclude(
    args: argparse.Namespace, result: dict[str, Any], show: Callable[[dict[str, Any]], None]
) -> None:
    """Show a run's figures, then record them unless the run was told `--no-record`."""
    show(result)
    if not args.no_record:
        record(result)


def measure_and_record(
    parser: argparse.ArgumentParser,
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """A benchmark's command line: parse it (with `--no-record`), measure, show and record."""
    parser.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    args = parser.parse_args()
    result = measure(args)
    conclude(args, result, show)
    return result
