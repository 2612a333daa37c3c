"""The demo: private servers, the simulator and every service on one machine, then a summary."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from specstress.analysis import summary as reports
from specstress.api import database, initialise, start_run
from specstress.cli.common import ConfigOption, console, load, run_async
from specstress.config import Config
from specstress.explorer.cli import DEFAULT_PORT
from specstress.local.servers import ensure_database, resolve_infra
from specstress.local.stack import Stack, wait_until_idle
from specstress.report.html import describe, write_report

__all__ = ["demo", "print_summary"]


async def print_summary(config: Config) -> None:
    async with database(config) as engine:
        c = await reports.counts(engine)
        by_set = await reports.disagreement_by_set(engine)
        compliance = await reports.compliance(engine)
    table = Table(title="pipeline", show_header=False)
    for label, key in (
        ("pairs", "pairs"),
        ("scenarios", "scenarios"),
        ("dropped generations", "drops"),
        ("responses", "responses"),
        ("spectra", "spectra"),
        ("classifications", "classifications"),
        ("flagged scenarios", "scenarios_flagged"),
        ("verdicts", "verdicts"),
        ("dead letters", "dead_letters"),
        ("LLM calls", "llm_calls_ok"),
    ):
        table.add_row(label, f"{c[key]:.0f}")
    console.print(table)
    bins = [f"D {lo:g}-{min(hi, 3):g}" for lo, hi in reports.D_BINS]
    d_table = Table(
        "model set",
        "scenarios",
        f"D>={config.disagreement.threshold:g}",
        "mean D",
        *bins,
        title="disagreement per model set",
    )
    for s in by_set:
        d_table.add_row(
            s.model_set, str(s.scenarios), str(s.high), f"{s.mean_d:.2f}", *(str(b) for b in s.bins)
        )
    console.print(d_table)
    v_table = Table(
        "spec",
        "scenarios judged",
        "answers judged",
        "flagged (majority)",
        "flagged (any)",
        "frequent non-compliance (majority / any)",
        title="compliance",
    )
    for row in compliance:
        v_table.add_row(
            f"{row['spec_id']} v{row['spec_version']}",
            str(row["scenarios_judged"]),
            str(row["answers_judged"]),
            str(row["majority_flagged"]),
            str(row["any_flagged"]),
            f"{row['frequent_majority']} / {row['frequent_any']}",
        )
    console.print(v_table)


async def _watch_until_idle(config: Config, timeout: float) -> None:
    waiter = asyncio.create_task(wait_until_idle(config, timeout))
    async with database(config) as engine:
        while not waiter.done():
            c = await reports.counts(engine)
            console.print(
                f"  pairs {c['pairs']:.0f} · scenarios {c['scenarios']:.0f} · responses "
                f"{c['responses']:.0f}/{c['responses_expected']:.0f} · spectra {c['spectra']:.0f} · "
                f"classified {c['classifications']:.0f} · flagged {c['scenarios_flagged']:.0f} · "
                f"verdicts {c['verdicts']:.0f}"
            )
            await asyncio.wait({waiter}, timeout=2.0)
        await waiter


def demo(
    config: ConfigOption = Path("specstress.demo.yaml"),
    pairs: Annotated[int, typer.Option(min=1, help="value pairs to run")] = 20,
    state_dir: Annotated[Path, typer.Option(help="where private servers keep data")] = Path(
        ".specstress"
    ),
    timeout: Annotated[float, typer.Option(help="seconds to wait for the pipeline")] = 600.0,
) -> None:
    """Run the whole pipeline offline on the simulator and print a summary."""
    started = time.monotonic()
    infra = resolve_infra(state_dir)
    stack = Stack(config_path=config, log_dir=state_dir / "logs", env={})
    try:
        database_url = infra.database_url
        if "DATABASE_URL" not in os.environ:
            database_url = asyncio.run(ensure_database(database_url, "specstress"))
        stack.env.update(NATS_URL=infra.nats_url, DATABASE_URL=database_url)
        os.environ.update(stack.env)
        console.print(f"NATS {infra.nats_url} · Postgres {database_url.split('@')[-1]}")
        stack.start_simulator()
        os.environ.update(stack.env)
        cfg = load(config)
        run_async(initialise(cfg))
        stack.start_services()
        console.print(
            f"simulator and {len(stack.processes) - 1} services running; logs in "
            f"{state_dir / 'logs'}"
        )
        published, new = run_async(start_run(cfg, pairs, cfg.sampling.seed))
        console.print(f"published {published} pairs ({new} new)")
        run_async(_watch_until_idle(cfg, timeout))
        run_async(print_summary(cfg))
        report = state_dir / "report.html"
        page = run_async(write_report(cfg, report, config_name=config.name))
        console.print(f"done in {time.monotonic() - started:.0f} s")
        console.print(
            f"Look at the results:\n"
            f"  {report}: every figure and table, one file that opens offline ({describe(page)})\n"
            f"  make view: starts the servers again on this data and the explorer at "
            f"http://127.0.0.1:{DEFAULT_PORT}/ (Ctrl-C stops both)\n"
            f"  specstress report TABLE -c {config}: one table as text, CSV or JSON"
        )
    finally:
        stack.stop()
        infra.close()
