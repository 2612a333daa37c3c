"""Batch mode end to end: the same rows and events as online, through a kill -9 mid-poll.

One run goes online; the other, on the same seed, sends the responder's, the classifier's and
the judges' calls in batch jobs, and the responder is killed while its first job is at the
simulator. Both runs must store the same rows and publish the same events; every batch job
is created once, and the answers come from the batches, not from online calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from specstress.api import start_run
from specstress.local.servers import Infra
from specstress.local.stack import wait_until_idle
from tests.paths import DEMO_CONFIG
from tests.support.database import fresh_database
from tests.support.pipeline_harness import rows, running_stack

pytestmark = pytest.mark.faults
PAIRS = 4
SEED = 11
# what each stage's batch mode looks like in the test: small jobs, sent and polled quickly
BATCH_SECTION = """
bus: {max_ack_pending: 500}
batch:
  responder: {enabled: true, max_requests_per_batch: 200, max_wait_seconds: 1, poll_seconds: 0.5}
  classifier: {enabled: true, max_requests_per_batch: 200, max_wait_seconds: 1, poll_seconds: 0.5}
  compliance_judge: {enabled: true, max_requests_per_batch: 200, max_wait_seconds: 1, poll_seconds: 0.5}
"""
# a job takes this long at the simulator, so the kill lands while it is being polled
CONDITIONS = "batches: {processing_seconds: 2}\n"
# the facts each run stores, compared column by column
FACT_TABLES = (
    "scenarios",
    "scenario_drops",
    "spectra",
    "responses",
    "classifications",
    "disagreement",
    "verdicts",
    "topic_labels",
    "refusal_types",
    "distinctive_values",
)
# timestamps, and the ledger key of an answer, which hashes the endpoint's URL: each run has
# its own simulator port
_RUN_COLUMNS = {"created_at", "updated_at", "computed_at", "llm_call_hash"}
# the simulator personas only the online stages (scenario writing, spectra) may be asked
ONLINE_PERSONAS = {"sim-writer-a", "sim-writer-b", "sim-spectrum"}


@pytest.fixture
async def second_database(infra: Infra) -> AsyncIterator[str]:
    async with fresh_database(infra) as url:
        yield url


async def _facts(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    facts = {}
    for table in FACT_TABLES:
        found = await rows(database_url, f"SELECT * FROM {table}")
        facts[table] = sorted(
            tuple(sorted((k, repr(v)) for k, v in r.items() if k not in _RUN_COLUMNS))
            for r in found
        )
    return facts


async def _events(nats_url: str, stream: str) -> list[tuple[str, str, bytes]]:
    """Every message the stream holds: (subject, Nats-Msg-Id, payload), sorted."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        state = (await js.stream_info(stream)).state
        found = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            message = await js.get_msg(stream, sequence)
            msg_id = (message.headers or {}).get("Nats-Msg-Id", "")
            found.append((message.subject or "", msg_id, message.data or b""))
        return sorted(found)
    finally:
        await client.close()


async def _drop_stream(nats_url: str, stream: str) -> None:
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


async def _first_job_in_flight(database_url: str) -> str:
    """The id of the responder's first job once the simulator has it and it has not ended."""
    for _ in range(1200):
        jobs = await rows(
            database_url,
            "SELECT job_id FROM llm_batch_jobs WHERE stage = 'responder' "
            "AND status = 'submitted' ORDER BY submitted_at LIMIT 1",
        )
        if jobs:
            return str(jobs[0]["job_id"])
        await asyncio.sleep(0.05)
    raise AssertionError("the responder sent no batch job")


async def test_batch_mode_matches_online_and_survives_a_kill_mid_poll(
    tmp_path: Path,
    nats_url: str,
    database_url: str,
    second_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the reference: everything online
    async with running_stack(tmp_path / "online", nats_url, second_database, monkeypatch) as run:
        stream = run.config.bus.stream
        await start_run(run.config, PAIRS, SEED)
        await wait_until_idle(run.config, timeout=240, stack=run.stack)
    online_facts = await _facts(second_database)
    online_events = await _events(nats_url, stream)
    await _drop_stream(nats_url, stream)
    assert online_facts["verdicts"], "the seed should flag something for the judges"
    assert online_facts["topic_labels"], "the seed should get a flagged scenario labelled"

    # the same seed in batch mode, with the responder killed while its first job is polled
    config_path = tmp_path / "batch.yaml"
    config_path.write_text(DEMO_CONFIG.read_text() + BATCH_SECTION)
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    async with running_stack(
        tmp_path / "batch",
        nats_url,
        database_url,
        monkeypatch,
        config_path=config_path,
        conditions=conditions,
    ) as run:
        await start_run(run.config, PAIRS, SEED)
        in_flight = await _first_job_in_flight(database_url)
        run.stack.kill("responder")
        await asyncio.sleep(1.0)
        run.stack.start_service("responder")
        await wait_until_idle(run.config, timeout=300, stack=run.stack)
        async with httpx.AsyncClient(base_url=run.sim_url) as client:
            sim_batches = (await client.get("/sim/batches")).json()
            sim_online = (await client.get("/sim/stats")).json()

    assert await _facts(database_url) == online_facts
    assert await _events(nats_url, stream) == online_events
    dead = await rows(database_url, "SELECT count(*) AS n FROM dead_letters")
    assert dead[0]["n"] == 0

    # the job in flight at the kill was polled to its end by the restarted service
    job = (
        await rows(
            database_url,
            f"SELECT status, request_count, succeeded_count FROM llm_batch_jobs "
            f"WHERE job_id = '{in_flight}'",
        )
    )[0]
    assert job["status"] == "ended"
    assert job["succeeded_count"] == job["request_count"]
    # every job was created once and no request was sent twice; a job the kill caught while it
    # was being sent is either found at the simulator (and ended) or was never created there
    # (released, its requests sent in a later job)
    jobs = await rows(
        database_url,
        "SELECT stage, status, count(*) AS n FROM llm_batch_jobs GROUP BY stage, status",
    )
    assert {j["status"] for j in jobs} <= {"ended", "released"}
    assert {j["stage"] for j in jobs} == {"responder", "classifier", "compliance_judge"}
    created = sum(int(j["n"]) for j in jobs if j["status"] == "ended")
    assert sim_batches["jobs_created"] == {"openai": created}
    assert sim_batches["custom_ids_sent_twice"] == 0
    # the answers came from the batches: the batched stages asked nothing online
    assert set(sim_online["models"]) <= ONLINE_PERSONAS
    unsettled = await rows(
        database_url,
        "SELECT count(*) AS n FROM llm_batch_requests WHERE status <> 'succeeded'",
    )
    assert unsettled[0]["n"] == 0
    paid_twice = await rows(
        database_url,
        "SELECT count(*) AS n FROM (SELECT request_hash FROM llm_calls WHERE status = 'ok' "
        "GROUP BY request_hash HAVING count(*) > 1) twice",
    )
    assert paid_twice[0]["n"] == 0
