"""The fault suite's cases, each one run on the shared harness (tests/faults/harness.py):
start a run on the simulator, inject, heal, wait for empty backlogs, then count what the fault
cost. `make test-faults` runs every case and prints the table; the default run keeps a few."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.errors import MaxPayloadError

from specstress.db.migrate import upgrade
from specstress.local.servers import ensure_database, start_postgres, stop_postgres
from specstress.pipeline.bus import connect
from specstress.pipeline.stages import STAGE_NAMES
from tests.e2e.test_secrets_canary import canaries_found, canary_keys, metrics_pages, use_canaries
from tests.faults.harness import FaultRun, Figures, fault_run, poison_payloads, record
from tests.paths import DEMO_CONFIG
from tests.support.traffic_harness import specstress_cli

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
        # the stalled process reads the answers that arrived meanwhile: none is paid twice
        # (pipeline/eventloop.py)
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
            await run.until_in_flight(8)  # answers on their way when the ledger goes
            bound = await run.inject(lambda: stop_postgres(server, "immediate"))
            await asyncio.sleep(5.0)
            server = start_postgres(server.data_dir, server.port)
            await run.settle()
            figures = await run.figures("postgres stop -m immediate, start", bound)
            check(figures, paid_at_most=bound)
            # the answers in flight were held across the outage, not thrown away
            assert figures.detail.get("answers_held", 0) > 0, figures.detail
    finally:
        server.stop()


@full
async def test_poison_on_every_consumed_subject(tmp_path: Path, database_url: str) -> None:
    async with fault_run(tmp_path, database_url) as run:
        await run.poison_every_subject(poison_payloads())
        await run.start()
        await run.settle()
        check(await run.figures("poison on every subject", None), paid_at_most=0)


# about half of all requests fail, in every way a provider fails
PROVIDER_FAULTS = {
    "rate_limited": 0.15,
    "server_error": 0.07,
    "unavailable": 0.07,
    "overloaded": 0.07,
    "hang": 0.03,
    "truncated": 0.03,
    "malformed": 0.05,
    "retry_after_seconds": 0.5,
}


@full
@pytest.mark.parametrize(
    ("label", "settings"),
    [
        pytest.param(
            "provider faults ~47% of calls",
            {"conditions": {"seed": 3, "faults": PROVIDER_FAULTS}},
            id="provider-faults-at-high-rates",
        ),
        pytest.param(
            "two replicas of every stage", {"replicas": 2}, id="two-replicas-of-every-stage"
        ),
    ],
)
async def test_a_stressed_run_loses_nothing_and_pays_nothing_twice(
    tmp_path: Path, database_url: str, label: str, settings: dict[str, Any]
) -> None:
    async with fault_run(tmp_path, database_url, **settings) as run:
        await run.start()
        await run.settle()
        check(await run.figures(label, None), paid_at_most=0)


@full
async def test_terminal_quota_error_then_resume(tmp_path: Path, database_url: str) -> None:
    async with fault_run(tmp_path, database_url) as run:
        await run.start()
        await run.until("responses", 12)
        quota = {"faults": {"insufficient_quota": 1.0}}
        bound = await run.inject(lambda: run.set_conditions(quota))
        await run.until("llm_provider_pauses", 1)
        await asyncio.sleep(2 * run.config.bus.defer_seconds)  # work waits on the bus meanwhile
        await run.set_conditions({})
        specstress_cli(run.config_path, run.database_url, "providers", "resume", "--all")
        await run.settle()
        figures = await run.figures("quota exhausted, then resume", bound)
        check(figures, paid_at_most=0)
        assert figures.detail.get("deferrals", 0) > 0, "the paused work waited on the bus"


@full
async def test_the_same_seed_twice_adds_nothing(tmp_path: Path, database_url: str) -> None:
    async with fault_run(tmp_path, database_url) as run:
        await run.start()
        await run.settle()
        first = await run.snapshot()
        await run.start()
        await run.settle()
        assert await run.snapshot() == first  # no new row, no new call
        check(await run.figures("same seed twice", None), paid_at_most=0)


@full
async def test_canary_keys_found_nowhere(tmp_path: Path, database_url: str) -> None:
    """Every model has its own canary key, sent on every call; after a run with a crash in it
    the keys are in no log, table, stream message, /metrics page or spill file."""
    keys = canary_keys(yaml.safe_load(DEMO_CONFIG.read_text()))
    async with fault_run(
        tmp_path, database_url, edit=use_canaries, require_key=True, env=keys
    ) as run:
        await run.start()
        await run.until("responses", 12)
        bound = await run.inject(lambda: run.kill("responder"))
        run.restart("responder")
        await run.settle()
        pages = await metrics_pages(run.stack)
        figures = await run.figures("canary keys (kill -9 responder)", bound)
        files = [*run.stack.log_dir.glob("*.log"), *(tmp_path / "spill").glob("*")]
        found = await canaries_found(files, database_url, run.config, pages, keys)
        figures.detail["canary_found"] = len(found)
        check(figures, paid_at_most=bound)
        assert set(pages) == set(STAGE_NAMES)  # every stage's page was read
        assert found == []


@full
async def test_oversized_inputs(tmp_path: Path, database_url: str) -> None:
    """A message over the server's max_payload is refused at publish; one just under it that
    no consumer can use is dead-lettered after one delivery, and the run is unharmed."""
    async with fault_run(tmp_path, database_url) as run:
        client = await connect(run.bus.url, "specstress-fault-oversized")
        try:
            limit = client.max_payload
            with pytest.raises(MaxPayloadError):
                await client.jetstream().publish("specstress.pairs.sampled", b"x" * (limit + 1))
        finally:
            await client.close()
        junk = b'{"schema_version": 1, "pair_id": "' + b"x" * (limit - 4096) + b'"}'
        await run.poison_every_subject([junk])
        await run.start()
        await run.settle()
        check(await run.figures("oversized payloads", None), paid_at_most=0)


@full
async def test_cluster_loses_its_stream_leader_then_a_follower(
    tmp_path: Path, database_url: str
) -> None:
    """Three JetStream nodes, stream replicas 3, every write fsynced: kill -9 of the node
    that leads the stream mid-run, then of a follower; nothing lost, nothing twice."""
    async with fault_run(tmp_path, database_url, cluster_size=3) as run:
        cluster = run.bus.cluster
        assert cluster is not None
        await run.start()
        await run.until("responses", 12)
        leader = await run.stream_leader()
        bound = await run.inject(lambda: cluster.kill(leader))
        await run.until("responses", 40)  # the run goes on under a new leader
        cluster.restart(leader)
        # a follower other than the node just back: the stream's quorum must include it
        current = await run.stream_leader()
        follower = next(n.name for n in cluster.nodes if n.name not in (current, leader))
        cluster.kill(follower)
        await run.until("classifications", 40)
        cluster.restart(follower)
        await run.settle()
        figures = await run.figures("cluster: kill -9 leader, then follower", bound)
        figures.detail["leader_killed"] = int(leader.removeprefix("n"))
        figures.detail["follower_killed"] = int(follower.removeprefix("n"))
        check(figures, paid_at_most=bound)
