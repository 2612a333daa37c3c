"""The fault suite's cases, each one run on the shared harness (tests/faults/harness.py):
start a run on the simulator, inject, heal, wait for empty backlogs, then count what the fault
cost. `make test-faults` runs every case and prints the table; the default run keeps a few."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from specstress.db.migrate import upgrade
from specstress.local.servers import ensure_database, start_postgres, stop_postgres
from tests.faults.harness import FaultRun, Figures, fault_run, poison_payloads, record

pytestmark = pytest.mark.faults
full = pytest.mark.full_faults

# the table that shows a stage part-way through its work, and how far
PROGRESS = {
    "scenario_generator": ("scenarios", 3),
    "responder": ("responses", 12),
    "spectrum_builder": ("spectra", 1),
    "classifier": ("classifications", 12),
    "aggregator": ("disagreement", 4),
    "compliance_judge": ("verdicts", 2),
}


def check(figures: Figures, *, paid_at_most: int) -> None:
    """Record the case, then hold it to the suite's bar."""
    record(figures)
    assert figures.lost == 0, figures.detail
    assert figures.duplicate_rows == 0, figures.detail
    assert figures.duplicate_events == 0, figures.detail
    assert figures.dead_letters == figures.poison, figures.detail
    assert "dead_letters_not_poison" not in figures.detail, figures.detail
    assert 0 <= figures.paid_duplicates <= paid_at_most, figures


async def kill_and_restart(run: FaultRun, victims: list[str], table: str, at_least: int) -> int:
    """kill -9 of `victims` once `table` holds `at_least` rows, restart them, settle; returns
    the calls in flight at the kill."""
    await run.start()
    await run.until(table, at_least)

    def kill() -> None:
        for victim in victims:
            run.kill(victim)

    bound = await run.inject(kill)
    await asyncio.sleep(1.0)
    for victim in victims:
        run.restart(victim)
    await run.settle()
    return bound


@pytest.mark.parametrize(
    "victim",
    [
        pytest.param("responder"),
        *(pytest.param(s, marks=full) for s in PROGRESS if s != "responder"),
    ],
)
async def test_kill_9_of_one_service(victim: str, tmp_path: Path, database_url: str) -> None:
    async with fault_run(tmp_path, database_url) as run:
        table, at_least = PROGRESS[victim]
        bound = await kill_and_restart(run, [victim], table, at_least)
        check(await run.figures(f"kill -9 {victim}", bound), paid_at_most=bound)


@full
async def test_kill_9_of_every_service_at_once(tmp_path: Path, database_url: str) -> None:
    async with fault_run(tmp_path, database_url) as run:
        bound = await kill_and_restart(run, list(PROGRESS), "responses", 20)
        check(await run.figures("kill -9 all six", bound), paid_at_most=bound)


@full
async def test_sigstop_past_ack_wait_then_sigcont(tmp_path: Path, database_url: str) -> None:
    """A stalled worker (GC pause, frozen VM) whose messages its twin takes over meanwhile."""
    victims = ["responder", "classifier"]
    async with fault_run(tmp_path, database_url, replicas=2) as run:
        await run.start()
        await run.until("responses", 12)

        def stop() -> None:
            for victim in victims:
                run.signal(victim, signal.SIGSTOP)

        bound = await run.inject(stop)
        await asyncio.sleep(3 * run.config.bus.ack_wait_seconds)
        for victim in victims:
            run.signal(victim, signal.SIGCONT)
        await run.settle()
        check(await run.figures("SIGSTOP 9 s, SIGCONT", bound), paid_at_most=0)


@full
async def test_kill_9_of_nats_server_restarted_on_its_store(
    tmp_path: Path, database_url: str
) -> None:
    async with fault_run(tmp_path, database_url) as run:
        await run.start()
        await run.until("responses", 12)
        bound = await run.inject(run.bus.kill)
        await asyncio.sleep(2.0)
        run.bus.restart()
        await run.settle()
        check(await run.figures("kill -9 nats-server, restart", bound), paid_at_most=0)


async def test_postgres_immediate_stop_and_start(server_tmp_path: Path) -> None:
    server = start_postgres(server_tmp_path / "postgres")
    try:
        database_url = await ensure_database(server.url, "faults")
        await upgrade(database_url)
        async with fault_run(server_tmp_path / "run", database_url) as run:
            await run.start()
            await run.until("responses", 12)
            bound = await run.inject(lambda: stop_postgres(server, "immediate"))
            await asyncio.sleep(5.0)
            server = start_postgres(server.data_dir, server.port)
            await run.settle()
            check(await run.figures("postgres stop -m immediate, start", bound), paid_at_most=bound)
    finally:
        server.stop()


@full
async def test_poison_on_every_consumed_subject(tmp_path: Path, database_url: str) -> None:
    async with fault_run(tmp_path, database_url) as run:
        await run.poison_every_subject(poison_payloads())
        await run.start()
        await run.settle()
        check(await run.figures("poison on every subject", None), paid_at_most=0)
