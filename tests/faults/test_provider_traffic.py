"""Services against a simulator that limits, fails and pauses like a real provider.

Every test counts rather than times: what the simulator served (`/sim/stats`) against what the
ledger recorded as paid, how many 429s the simulator's own limit gave, dead letters and
deferrals. The rate-limit utilisation figure is measured in bench/ratelimit.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from specstress import ids
from specstress.config import ModelConfig
from specstress.contracts import Event, ResponseRequested, VerdictRequested
from specstress.db import store
from specstress.db.engine import create_engine
from specstress.llm import ChatMessage, Gateway
from specstress.llm.errors import LLMDeferred
from specstress.local.stack import Stack
from tests.support.pipeline_harness import rows
from tests.support.traffic_harness import (
    Sim,
    eventually,
    model,
    prepare,
    publish_all,
    seed_scenarios,
    simulator,
    specstress_cli,
    stack_for,
    write_config,
)

pytestmark = pytest.mark.faults

KEY_ENV = "SPECSTRESS_TRAFFIC_KEY"


async def _count(database_url: str, sql: str) -> int:
    return int((await rows(database_url, f"SELECT count(*) AS n FROM {sql}"))[0]["n"])


def _metric(stack: Stack, process: str, sample: str) -> float:
    port = stack.processes[process].metrics_port
    exposition = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    for line in exposition.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


async def _answer_all(
    stack: Stack,
    sim: Sim,
    target: dict[str, Any],
    *,
    calls: int,
    topic: str,
    timeout: float,
    replicas: int = 1,
) -> None:
    """`target` (beside a second target model) answers `calls` new scenarios on `topic` through
    `replicas` responders; returns once every answer is stored. The config is written where
    the stack (from stack_for) expects it."""
    database_url = stack.env["DATABASE_URL"]
    config = write_config(
        stack.config_path.parent,
        sim,
        models=[target, model("other", "borealis-candid", sim)],
        targets=[target["key"], "other"],
    )
    await prepare(config)
    scenarios = await seed_scenarios(database_url, calls, topic)
    for replica in range(replicas):
        stack.start_service("responder", replica=replica)
    requests: list[Event] = [
        ResponseRequested(scenario_id=s, model_key=target["key"]) for s in scenarios
    ]
    await publish_all(stack.env["NATS_URL"], requests)

    async def answered() -> bool:
        return await _count(database_url, "responses") == calls

    await eventually(answered, stack, timeout, f"{calls} responses")


async def test_two_responder_replicas_share_one_rate_limit_without_429s(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 40
    # the simulator's bucket holds only 2 s of its 120 RPM, so a fleet sending faster than the
    # limit (two replicas pacing on their own, say) is refused within seconds
    conditions = {
        "seed": 1,
        "latency": {"median_ms": 200, "p95_ms": 400},
        "models": {"aurora-balanced": {"limits": {"requests_per_minute": 120, "burst_seconds": 2}}},
    }
    async with stack_for(tmp_path, nats_url, database_url, monkeypatch) as stack:
        with simulator(stack, tmp_path, conditions) as sim:
            limited = model("limited", "aurora-balanced", sim, limits={"requests_per_minute": 120})
            await _answer_all(
                stack,
                sim,
                limited,
                calls=calls,
                topic="pacing",
                replicas=2,
                timeout=120,
            )
            served = (await sim.stats())["aurora-balanced"]
            sample = 'specstress_llm_calls_total{model="limited",outcome="ok",stage="responder"}'
            per_replica = [_metric(stack, name, sample) for name in ("responder", "responder-1")]
    assert served.get("limit_exceeded", 0) == 0
    assert served["requests"] == served["ok"] == calls
    assert await _count(database_url, "llm_calls WHERE status = 'ok'") == calls
    # both replicas did part of the work under the one shared limit
    assert sum(per_replica) == calls
    assert min(per_replica) > 0


async def test_with_a_fifth_of_calls_failing_every_call_succeeds_and_none_is_paid_twice(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 30
    faults = {
        "rate_limited": 0.05,
        "server_error": 0.05,
        "unavailable": 0.05,
        "overloaded": 0.05,
        "retry_after_seconds": 0.2,
    }
    conditions = {"seed": 5, "models": {"aurora-balanced": {"faults": faults}}}
    async with stack_for(tmp_path, nats_url, database_url, monkeypatch) as stack:
        with simulator(stack, tmp_path, conditions) as sim:
            # few attempts per delivery, so some calls also go back to the bus and return
            retry = {"max_attempts": 3, "base_seconds": 0.05, "cap_seconds": 1.0}
            flaky = model("flaky", "aurora-balanced", sim, retry=retry)
            await _answer_all(
                stack,
                sim,
                flaky,
                calls=calls,
                topic="faults",
                timeout=120,
            )
            served = (await sim.stats())["aurora-balanced"]
    injected = sum(served.get(kind, 0) for kind in faults if kind != "retry_after_seconds")
    assert injected > 0
    assert served["requests"] == served["ok"] + injected
    # every answer the simulator handed out was paid once and is the one the ledger holds
    assert await _count(database_url, "llm_calls WHERE status = 'ok'") == served["ok"] == calls
    assert await _count(database_url, "llm_calls WHERE status = 'error'") == injected
    assert await _count(database_url, "dead_letters") == 0


async def test_malformed_judge_output_is_reasked_then_dead_lettered_with_its_reason(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conditions = {"models": {"sim-judge-strict": {"faults": {"malformed": 1.0}}}}
    async with stack_for(tmp_path, nats_url, database_url, monkeypatch) as stack:
        with simulator(stack, tmp_path, conditions) as sim:
            config = write_config(
                tmp_path,
                sim,
                models=[model("target", "aurora-balanced", sim)],
                targets=["target", "spectrum"],
            )
            await prepare(config)
            [scenario] = await seed_scenarios(database_url, 1, "judging")
            engine = create_engine(database_url, pool_size=2)
            response_id = ids.response_id(scenario, "target", {})
            try:
                await store.insert_response(
                    engine,
                    response_id=response_id,
                    scenario_id=scenario,
                    model_key="target",
                    text="Tell them, kindly and plainly.",
                    thinking=None,
                    params={},
                    llm_call_hash="0" * 64,
                )
            finally:
                await engine.dispose()
            stack.start_service("compliance_judge")
            await publish_all(
                nats_url,
                [
                    VerdictRequested(
                        response_id=response_id, judge="judge-strict", spec_id="example"
                    )
                ],
            )

            async def dead_lettered() -> bool:
                return await _count(database_url, "dead_letters") == 1

            await eventually(dead_lettered, stack, 60, "the dead letter")
            served = (await sim.stats())["sim-judge-strict"]
    [letter] = await rows(database_url, "SELECT reason, deliveries FROM dead_letters")
    assert str(letter["reason"]).startswith("llm bad_output: judge-strict answered out of format")
    assert "3 time(s)" in str(letter["reason"])
    # bad output is not worth another delivery: the re-asks were its retries
    assert letter["deliveries"] == 1
    assert served["requests"] == served["malformed"] == served["ok"] == 3
    assert await _count(database_url, "llm_calls WHERE status = 'ok'") == 3
    assert await _count(database_url, "verdicts") == 0


async def test_work_for_a_paused_provider_waits_on_the_bus_without_dead_lettering(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-traffic")
    conditions = {"models": {"aurora-deferential": {"faults": {"insufficient_quota": 1.0}}}}
    async with stack_for(tmp_path, nats_url, database_url, monkeypatch) as stack:
        with simulator(stack, tmp_path, conditions) as sim:
            broke = model("broke", "aurora-deferential", sim, api_key_env=KEY_ENV)
            healthy = model("healthy", "borealis-candid", sim, api_key_env=KEY_ENV)
            config_path = write_config(
                tmp_path,
                sim,
                models=[broke, healthy],
                targets=["broke", "healthy"],
                # two failures would dead-letter; waits do not count
                bus={"max_deliver": 2, "defer_seconds": 1},
            )
            config = await prepare(config_path)
            # a call that finds the account out of money pauses it for the whole fleet
            engine = create_engine(database_url, pool_size=2)
            gateway = Gateway(engine, service="test")
            try:
                with pytest.raises(LLMDeferred):
                    await gateway.generate(
                        ModelConfig.model_validate(broke),
                        [ChatMessage(role="user", content="hi")],
                        stage="test",
                    )
            finally:
                await gateway.aclose()
                await engine.dispose()
            [scenario] = await seed_scenarios(database_url, 1, "paused")
            stack.start_service("responder")
            await publish_all(
                nats_url, [ResponseRequested(scenario_id=scenario, model_key="healthy")]
            )

            async def deferred_often() -> bool:
                waits = await rows(database_url, "SELECT deferrals FROM message_deferrals")
                return bool(waits) and int(waits[0]["deferrals"]) > config.bus.max_deliver

            await eventually(deferred_often, stack, 60, "repeated deferrals")
            assert await _count(database_url, "dead_letters") == 0
            assert "borealis-candid" not in await sim.stats()

            specstress_cli(config_path, database_url, "providers", "resume", "--all")

            async def answered() -> bool:
                return await _count(database_url, "responses") == 1

            await eventually(answered, stack, 60, "the response after the resume")
            served = await sim.stats()
    assert served["borealis-candid"]["requests"] == 1
    assert served["aurora-deferential"]["requests"] == 1
    assert await _count(database_url, "dead_letters") == 0
    # a settled message leaves no deferral count behind
    assert await _count(database_url, "message_deferrals") == 0


async def test_an_answer_holding_a_nul_byte_is_cleaned_stored_and_paid_once(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 3
    conditions = {"models": {"aurora-balanced": {"faults": {"nul_byte": 1.0}}}}
    async with stack_for(tmp_path, nats_url, database_url, monkeypatch) as stack:
        with simulator(stack, tmp_path, conditions) as sim:
            await _answer_all(
                stack,
                sim,
                model("target", "aurora-balanced", sim),
                calls=calls,
                topic="bytes",
                timeout=60,
            )
            served = (await sim.stats())["aurora-balanced"]
    # the byte Postgres refuses is cleaned out before the ledger: nothing is dead-lettered and
    # each answer is bought once
    assert served["ok"] == served["nul_byte"] == calls
    assert await _count(database_url, "llm_calls WHERE status = 'ok'") == calls
    assert await _count(database_url, "dead_letters") == 0
