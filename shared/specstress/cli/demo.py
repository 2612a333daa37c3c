"""The demo: private servers, the simulator and every service on one machine until the run is
settled, then a summary that says whether it is complete."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from specstress.analysis import summary as reports
from specstress.api import database, initialise, start_run
from specstress.cli.commands import state_line
from specstress.cli.common import ConfigOption, console, load, run_async
from specstress.cli.serve import DEFAULT_PORT
from specstress.cli.watch import print_comparison
from specstress.config import Config
from specstress.local import Stack, ensure_database, resolve_infra
from specstress.pipeline.progress import Completeness, completeness
from specstress.report.html import describe, write_report
from specstress.watch import Comparison
from specstress.watch import store as discoveries

__all__ = ["demo", "print_state", "print_summary", "watch_until_settled"]

# the model the demo releases at the simulator once its pairs are done; its family's rule in
# specstress.demo.yaml registers it, and the watcher reports on it once it is backfilled
DEMO_RELEASE = "aurora-nova"


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


def print_state(state_dir: Path, postgres_dir: Path | None) -> None:
    """Say where this run keeps its state: the state folder, and PostgreSQL's data when it had
    to live elsewhere because the user that runs PostgreSQL cannot enter the state folder."""
    here = state_dir.absolute()
    line = f"state in {here} (service logs in {here / 'logs'})"
    if postgres_dir is not None and not postgres_dir.is_relative_to(here.resolve()):
        line += (
            f"; PostgreSQL's data in {postgres_dir}, linked from {here / 'postgres'}, "
            "because the user that runs PostgreSQL cannot enter this folder"
        )
    console.print(f"{line}; `make clean` removes it", soft_wrap=True)


async def watch_until_settled(config: Config, timeout: float) -> Completeness:
    """Until every expected unit has its result or a dead letter (or the timeout), a line of
    progress every two seconds; an idle bus alone says nothing about completeness."""
    deadline = time.monotonic() + timeout
    async with database(config) as engine:
        while True:
            done = await completeness(engine, config)
            console.print(
                "  "
                + " · ".join(f"{s.stage} {s.done}/{s.expected}" for s in done.stages if s.expected)
                + (f" · dead-lettered {done.dead_lettered}" if done.dead_lettered else "")
            )
            if done.settled or time.monotonic() >= deadline:
                return done
            await asyncio.sleep(2.0)


async def _release(config: Config, sim_url: str, timeout: float) -> Comparison:
    """Release DEMO_RELEASE at the simulator and wait for the watcher's report on it."""
    async with httpx.AsyncClient(base_url=sim_url) as client:
        (await client.post("/sim/models", json={"release": DEMO_RELEASE})).raise_for_status()
    deadline = time.monotonic() + timeout
    async with database(config) as engine:
        while time.monotonic() < deadline:
            body = await discoveries.stored_comparison(engine, DEMO_RELEASE)
            if body is not None:
                return Comparison.model_validate(body)
            await asyncio.sleep(2.0)
    raise TimeoutError(f"no release report of {DEMO_RELEASE} after {timeout:.0f} s")


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
        print_state(state_dir, infra.postgres_dir)
        sim_url = stack.start_simulator()
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
        done = run_async(watch_until_settled(cfg, timeout))
        console.print(f"releasing {DEMO_RELEASE} at the simulator; the watcher takes it from there")
        release = run_async(_release(cfg, sim_url, timeout))
        done = run_async(watch_until_settled(cfg, timeout))
        run_async(print_summary(cfg))
        print_comparison(release)
        report = state_dir / "report.html"
        page = run_async(write_report(cfg, report, config_name=config.name))
        console.print(f"done in {time.monotonic() - started:.0f} s")
        console.print(f"run {state_line(done)}")
        if not done.settled:
            console.print(
                f"stopped after the {timeout:.0f} s timeout; the work left waits on the bus "
                "for the next start"
            )
        console.print(
            f"Look at the results:\n"
            f"  {report}: every figure and table, one file that opens offline ({describe(page)})\n"
            f"  make view: starts the servers again on this data and the explorer at "
            f"http://127.0.0.1:{DEFAULT_PORT}/ (Ctrl-C stops both)\n"
            f"  specstress report TABLE -c {config}: one table as text, CSV or JSON"
        )
    finally:
        stack.stop()
        infra.stop()
