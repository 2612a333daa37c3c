"""A run that knows when it is complete: dead letters settle it, a replay completes it.

One target model's provider refuses every request (a terminal 400). Its answers are
dead-lettered with a reason code, the classifier learns of each at once and classifies the
other answers without it, and the run is *settled* (not complete) as soon as the bus is idle.
`status --json` must equal counts taken here from the tables; `wait` exits 1 and 0 as asked.
Once the provider heals, `dead-letters replay` completes the run, buying each answer once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from specstress.api import database, start_run
from specstress.cli.main import app
from specstress.local.stack import wait_until_idle
from specstress.pipeline.progress import completeness
from tests.support.pipeline_harness import check_planted_disagreement, rows, running_stack

pytestmark = pytest.mark.e2e
PAIRS = 4
SEED = 3
REFUSED = "borealis-literal"


async def _cli(config: Path, *args: str) -> Result:
    """The command line in this process (a new interpreter per command costs seconds); in a
    thread, because each command runs its own event loop."""
    runner = CliRunner()

    def invoke() -> Result:
        return runner.invoke(app, [*args, "--config", str(config)], catch_exceptions=False)

    return await asyncio.to_thread(invoke)


async def _one(database_url: str, sql: str) -> int:
    [row] = await rows(database_url, sql)
    return int(next(iter(row.values())))


async def _independent_counts(database_url: str, targets: int) -> dict[str, dict[str, int]]:
    """Each stage's figures from the tables, written here without the completeness SQL."""
    scenarios = await _one(database_url, "SELECT count(*) FROM scenarios")
    responses = await _one(database_url, "SELECT count(*) FROM responses")
    classified = await _one(database_url, "SELECT count(*) FROM classifications")
    flagged = await _one(
        database_url, "SELECT count(DISTINCT scenario_id) FROM disagreement WHERE high"
    )
    flagged_answers = await _one(
        database_url,
        "SELECT count(*) FROM classifications WHERE scenario_id IN "
        "(SELECT scenario_id FROM disagreement WHERE high)",
    )
    judged = await _one(
        database_url,
        "SELECT count(*) FROM responses r JOIN models m USING (model_key) WHERE m.family = 'aurora'"
        " AND r.scenario_id IN (SELECT scenario_id FROM disagreement WHERE high)",
    )
    d_rows = await _one(database_url, "SELECT count(*) FROM disagreement")
    return {
        "scenarios": {
            "expected": 3 * PAIRS,
            "done": scenarios + await _one(database_url, "SELECT count(*) FROM scenario_drops"),
        },
        "responses": {"expected": scenarios * targets, "done": responses},
        "spectra": {
            "expected": await _one(database_url, "SELECT count(DISTINCT pair_id) FROM scenarios"),
            "done": await _one(database_url, "SELECT count(*) FROM spectra"),
        },
        "classifications": {"expected": responses, "done": classified},
        "disagreement": {"expected": d_rows, "done": d_rows},
        "verdicts": {
            "expected": judged * 3,
            "done": await _one(database_url, "SELECT count(*) FROM verdicts"),
        },
        "topic_labels": {
            "expected": flagged,
            "done": await _one(database_url, "SELECT count(*) FROM topic_labels"),
        },
        "refusal_types": {
            "expected": classified,
            "done": await _one(database_url, "SELECT count(*) FROM refusal_types"),
        },
        "distinctive_values": {
            "expected": flagged_answers,
            "done": await _one(
                database_url, "SELECT count(DISTINCT response_id) FROM distinctive_values"
            ),
        },
    }


async def _status(config: Path) -> dict[str, Any]:
    shown = await _cli(config, "status", "--json")
    assert shown.exit_code == 0, shown.stdout
    status: dict[str, Any] = json.loads(shown.stdout)
    return status


async def test_dead_letters_settle_the_run_and_a_replay_completes_it(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(yaml.safe_dump({"models": {REFUSED: {"faults": {"bad_request": 1.0}}}}))
    async with running_stack(
        tmp_path, nats_url, database_url, monkeypatch, conditions=conditions
    ) as running:
        config = running.config
        config_path = running.stack.config_path
        targets = len(config.roles.targets)
        await start_run(config, PAIRS, SEED)
        await wait_until_idle(config, timeout=120, stack=running.stack)
        idle_at = time.monotonic()
        async with database(config) as engine:
            while not (done := await completeness(engine, config)).settled:
                assert time.monotonic() - idle_at < 5, (
                    f"not settled after the bus went idle: {done}"
                )
                await asyncio.sleep(0.2)

        # every answer of the refused model is dead-lettered with its code; all others classified
        scenarios = await _one(database_url, "SELECT count(*) FROM scenarios")
        letters = await rows(
            database_url, "SELECT reason_code, stage, unit, reason, payload FROM dead_letters"
        )
        assert len(letters) == scenarios
        assert {(r["reason_code"], r["stage"]) for r in letters} == {
            ("provider_refused", "responses")
        }
        assert all(str(r["unit"]).endswith(f"/{REFUSED}") for r in letters)
        assert all(len(str(r["reason"])) <= 300 for r in letters)
        unclassified = await _one(
            database_url,
            "SELECT count(*) FROM responses r LEFT JOIN classifications c USING (response_id) "
            "WHERE c.response_id IS NULL",
        )
        assert unclassified == 0
        assert await _one(database_url, "SELECT count(*) FROM responses") == scenarios * (
            targets - 1
        )
        # every D, over the answers that exist: the missing one shows as a smaller set
        await check_planted_disagreement(running, database_url)
        assert await rows(
            database_url, "SELECT DISTINCT members FROM disagreement WHERE model_set = 'all'"
        ) == [{"members": targets - 1}]

        # status --json: the same figures as the tables say, settled and not complete
        status = await _status(config_path)
        assert status["settled"] is True
        assert status["complete"] is False
        assert status["dead_letters"] == {"provider_refused": scenarios}
        counted = await _independent_counts(database_url, targets)
        for stage, figures in counted.items():
            shown = status["stages"][stage]
            dead = scenarios if stage == "responses" else 0
            assert shown["expected"] == figures["expected"], stage
            assert shown["done"] == figures["done"], stage
            assert shown["dead_lettered"] == dead, stage
            assert shown["pending"] == figures["expected"] - figures["done"] - dead == 0, stage
        assert status["stages"]["verdicts"]["expected"] > 0, "the run should flag something"

        # wait: complete is not reached (exit 1, saying what holds it back); settled is
        waited = await _cli(config_path, "wait", "--until", "complete", "--timeout", "1")
        assert waited.exit_code == 1, waited.stdout
        assert f"responses: 0 pending (oldest -), {scenarios} dead-lettered" in waited.stdout
        assert (
            await _cli(config_path, "wait", "--until", "settled", "--timeout", "5")
        ).exit_code == 0

        # the provider heals; replaying the refused answers completes the run
        async with httpx.AsyncClient(base_url=running.sim_url) as client:
            (await client.put("/sim/conditions", json={})).raise_for_status()
        listed = await _cli(
            config_path, "dead-letters", "list", "--reason", "provider_refused", "--json"
        )
        assert len(json.loads(listed.stdout)) == scenarios
        replayed = await _cli(config_path, "dead-letters", "replay", "--reason", "provider_refused")
        assert f"replayed {scenarios} dead letter(s)" in replayed.stdout, replayed.stdout
        again = await _cli(config_path, "dead-letters", "replay", "--reason", "provider_refused")
        assert "replayed 0 dead letter(s)" in again.stdout, again.stdout
        completed = await _cli(config_path, "wait", "--until", "complete", "--timeout", "60")
        assert completed.exit_code == 0, completed.stdout
        status = await _status(config_path)
        assert status["complete"] is True and status["dead_letters"] == {}
        assert status["stages"]["responses"]["done"] == scenarios * targets

        # the late answers are classified and every D recomputed over all six
        assert await rows(
            database_url, "SELECT DISTINCT members FROM disagreement WHERE model_set = 'all'"
        ) == [{"members": targets}]
        await check_planted_disagreement(running, database_url)

        # the refused model's one-model view (the release watcher's "backfill complete")
        async with database(config) as engine:
            refused = await completeness(engine, config, model_key=REFUSED)
        assert refused.complete
        assert refused.stage("responses").expected == scenarios
        assert refused.stage("classifications").done == scenarios

        # nothing paid twice: each model's paid ledger rows equal the answers the simulator sold
        async with httpx.AsyncClient(base_url=running.sim_url) as client:
            sold = (await client.get("/sim/stats")).json()["models"]
        paid = {
            str(r["model_key"]): int(r["n"])
            for r in await rows(
                database_url,
                "SELECT model_key, count(*) AS n FROM llm_calls WHERE status = 'ok' "
                "GROUP BY model_key",
            )
        }
        for model_key, n in paid.items():
            assert sold[config.model(model_key).model_id]["ok"] == n, model_key
        assert sold[REFUSED]["ok"] == scenarios
        assert sold[REFUSED]["bad_request"] == scenarios
