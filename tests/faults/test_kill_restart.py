"""SIGKILL a service mid-run, restart it, and find the same final rows with no duplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from specstress.api import start_run
from specstress.local.stack import wait_until_idle
from tests.support.pipeline_harness import check_planted_disagreement, rows, running_stack

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("victim", ["responder", "classifier"])
async def test_killed_service_resumes_without_loss_or_duplicates(
    victim: str,
    tmp_path: Path,
    nats_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_stack(tmp_path, nats_url, database_url, monkeypatch) as running:
        config = running.config
        await start_run(config, 10, 5)
        table = "responses" if victim == "responder" else "classifications"
        for _ in range(400):  # kill once the victim is part-way through its work
            done = (await rows(database_url, f"SELECT count(*) AS n FROM {table}"))[0]["n"]
            if isinstance(done, int) and done >= 5:
                break
            await asyncio.sleep(0.05)
        running.stack.kill(victim)
        await asyncio.sleep(1.0)
        running.stack.start_service(victim)
        await wait_until_idle(config, timeout=240, stack=running.stack)

        scenarios = (await rows(database_url, "SELECT count(*) AS n FROM scenarios"))[0]["n"]
        assert isinstance(scenarios, int)
        counts = (
            await rows(
                database_url,
                "SELECT (SELECT count(*) FROM responses) AS responses,"
                " (SELECT count(DISTINCT (scenario_id, model_key)) FROM responses) AS distinct_r,"
                " (SELECT count(*) FROM classifications) AS classifications,"
                " (SELECT count(*) FROM dead_letters) AS dead_letters",
            )
        )[0]
        expected_responses = scenarios * len(config.roles.targets)
        assert counts == {
            "responses": expected_responses,
            "distinct_r": expected_responses,
            "classifications": expected_responses,
            "dead_letters": 0,
        }
        # every answer was paid for exactly once: one completed ledger row per response
        paid = await rows(
            database_url,
            "SELECT count(*) AS n FROM llm_calls WHERE stage = 'responder' AND status = 'ok'",
        )
        assert paid[0]["n"] == expected_responses
        await check_planted_disagreement(running, database_url)
