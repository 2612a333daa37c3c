"""The gateway against the simulator over real HTTP: terminal errors, provider pauses, the budget.

Counts come from the simulator (`/sim/stats`): what it received is what would have been paid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Budget, ModelConfig
from specstress.llm import ChatMessage, Gateway, LLMError
from specstress.llm.errors import BudgetExhausted, LLMDeferred
from specstress.llm.traffic import store as limits
from specstress.local.stack import Stack
from tests.support.traffic_harness import Sim, model, simulator, specstress_cli, write_config

SHARED_KEY = "SPECSTRESS_TRAFFIC_SHARED_KEY"
OTHER_KEY = "SPECSTRESS_TRAFFIC_OTHER_KEY"


@pytest.fixture(autouse=True)
def shared_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # every model in these tests reads its key from this variable unless it names another
    monkeypatch.setenv(SHARED_KEY, "sk-shared")


@pytest.fixture
def stack(tmp_path: Path) -> Any:
    processes = Stack(config_path=tmp_path / "specstress.yaml", log_dir=tmp_path / "logs", env={})
    yield processes
    processes.stop()


def _model(sim: Sim, key: str, model_id: str, api_key_env: str = SHARED_KEY) -> ModelConfig:
    return ModelConfig.model_validate(model(key, model_id, sim, api_key_env=api_key_env))


def _ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def test_terminal_errors_are_not_retried_and_quota_pauses_the_provider(
    stack: Stack,
    tmp_path: Path,
    engine: AsyncEngine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OTHER_KEY, "sk-other")
    faults = {
        "aurora-cautious": {"faults": {"bad_request": 1.0}},
        "aurora-balanced": {"faults": {"unauthorized": 1.0}},
        "aurora-deferential": {"faults": {"insufficient_quota": 1.0}},
    }
    with simulator(stack, tmp_path, {"models": faults}) as sim:
        gateway = Gateway(engine, service="test", defer_seconds=7)
        try:
            for model_id, status in (("aurora-cautious", 400), ("aurora-balanced", 401)):
                with pytest.raises(LLMError) as caught:
                    await gateway.generate(_model(sim, "m", model_id), _ask("hi"), stage="t")
                assert (caught.value.error_class, caught.value.http_status) == (
                    "terminal_client",
                    status,
                )
                assert not isinstance(caught.value, LLMDeferred)
                assert (await sim.stats())[model_id]["requests"] == 1

            broke = _model(sim, "broke", "aurora-deferential")
            with pytest.raises(LLMDeferred) as deferred:
                await gateway.generate(broke, _ask("hi"), stage="t")
            assert deferred.value.error_class == "terminal_quota"
            assert deferred.value.delay == 7
            assert "exceeded your current quota" in str(deferred.value)
            assert (await sim.stats())["aurora-deferential"]["requests"] == 1

            # the whole account is paused: a sibling model on the same key is not even asked
            sibling = _model(sim, "sibling", "borealis-candid")
            with pytest.raises(LLMDeferred) as paused:
                await gateway.generate(sibling, _ask("hi"), stage="t")
            assert paused.value.cause == "provider_paused"
            assert "borealis-candid" not in await sim.stats()
            labels = {"provider": sim.base_url.removeprefix("http://"), "key_env": SHARED_KEY}
            assert REGISTRY.get_sample_value("specstress_provider_paused", labels) == 1
            # ... while another account on the same server is untouched
            elsewhere = _model(sim, "elsewhere", "borealis-candid", api_key_env=OTHER_KEY)
            assert (await gateway.generate(elsewhere, _ask("hi"), stage="t")).text
        finally:
            await gateway.aclose()

        [pause] = await limits.pauses(engine, active_only=True)
        assert (pause.base_url, pause.api_key_env, pause.paused_until) == (
            sim.base_url,
            SHARED_KEY,
            None,
        )
        config = write_config(tmp_path, sim, models=[], targets=["spectrum", "classifier"])
        listed = specstress_cli(config, database_url, "providers", "list")
        assert sim.base_url in listed and "cleared by hand" in listed
        resumed = specstress_cli(config, database_url, "providers", "resume", sim.base_url)
        assert f"resumed {sim.base_url}" in resumed

        gateway = Gateway(engine, service="test")
        try:
            # the same question was answered on the other account: the ledger serves it
            assert (await gateway.generate(sibling, _ask("hi"), stage="t")).from_cache
            assert (await gateway.generate(sibling, _ask("hi again"), stage="t")).text
        finally:
            await gateway.aclose()
        assert (await sim.stats())["borealis-candid"]["requests"] == 2


async def test_a_spent_budget_stops_paid_calls_but_serves_the_cache(
    stack: Stack,
    tmp_path: Path,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    with simulator(stack, tmp_path, {}) as sim:
        target = _model(sim, "target", "aurora-balanced")
        gateway = Gateway(engine, service="test", budget=Budget(max_tokens=10), defer_seconds=9)
        try:
            first = await gateway.generate(target, _ask("first question"), stage="t")
            spent = first.usage.input_tokens + first.usage.output_tokens
            assert spent >= 10
            with pytest.raises(BudgetExhausted) as caught:
                await gateway.generate(target, _ask("second question"), stage="t")
            assert caught.value.delay == 9
            assert f"{spent} of 10 tokens" in str(caught.value)
            again = await gateway.generate(target, _ask("first question"), stage="t")
            assert again.from_cache and again.text == first.text
        finally:
            await gateway.aclose()
        assert (await sim.stats())["aurora-balanced"]["requests"] == 1
        cost, tokens = await limits.spent(engine)
        assert cost == pytest.approx(first.cost_usd)
        assert tokens == spent

        config = write_config(
            tmp_path, sim, models=[], targets=["spectrum", "classifier"], budget={"max_tokens": 10}
        )
        status = specstress_cli(config, database_url, "status")
        assert f"budget: {spent} of 10 tokens spent" in status
        assert "EXHAUSTED" in status


async def _limit_row(engine: AsyncEngine, model_id: str) -> dict[str, Any]:
    query = text(
        "SELECT learned_requests_per_minute, rate_factor,"
        " blocked_until - extract(epoch FROM now()) AS blocked_for"
        " FROM llm_rate_limits WHERE model_id = :model_id"
    )
    async with engine.connect() as conn:
        return dict((await conn.execute(query, {"model_id": model_id})).one()._mapping)


async def test_headers_and_429s_from_the_provider_set_the_fleets_pace(
    stack: Stack, tmp_path: Path, engine: AsyncEngine
) -> None:
    conditions = {
        "models": {
            "aurora-balanced": {"limits": {"requests_per_minute": 600}},
            "borealis-candid": {"faults": {"rate_limited": 1.0, "retry_after_seconds": 5}},
        }
    }
    with simulator(stack, tmp_path, conditions) as sim:
        gateway = Gateway(engine, service="test")
        try:
            # no limit configured: the one the provider announces is learned and then kept
            unconfigured = _model(sim, "unconfigured", "aurora-balanced")
            await gateway.generate(unconfigured, _ask("first"), stage="t")
            assert (await _limit_row(engine, "aurora-balanced"))[
                "learned_requests_per_minute"
            ] == 600

            # a 429 asking for longer than the retry cap goes back to the caller, and the
            # whole fleet holds off for as long, at half the rate
            throttled = ModelConfig.model_validate(
                model(
                    "throttled",
                    "borealis-candid",
                    sim,
                    api_key_env=SHARED_KEY,
                    retry={"max_attempts": 3, "cap_seconds": 1.0},
                )
            )
            with pytest.raises(LLMDeferred) as caught:
                await gateway.generate(throttled, _ask("second"), stage="t")
            assert (caught.value.cause, caught.value.delay) == ("provider_wait", 5.0)
        finally:
            await gateway.aclose()
        row = await _limit_row(engine, "borealis-candid")
        assert row["rate_factor"] == 0.5
        assert 4 < row["blocked_for"] <= 5
        assert (await sim.stats())["borealis-candid"]["requests"] == 1


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
async def test_each_protocol_sees_the_faults_its_real_api_would_send(
    protocol: str,
    stack: Stack,
    tmp_path: Path,
    engine: AsyncEngine,
) -> None:
    conditions = {
        "models": {
            "aurora-cautious": {"faults": {"overloaded": 0.5, "truncated": 0.5}},
            "aurora-balanced": {"faults": {"hang": 1.0}},
            "aurora-deferential": {"faults": {"insufficient_quota": 1.0}},
        }
    }
    with simulator(stack, tmp_path, conditions) as sim:

        def on(model_id: str, **settings: Any) -> ModelConfig:
            entry = model(model_id, model_id, sim, protocol=protocol, api_key_env=SHARED_KEY)
            if protocol != "openai":
                entry["base_url"] = sim.url
            return ModelConfig.model_validate({**entry, **settings})

        few_tries = {"max_attempts": 4, "base_seconds": 0.01, "cap_seconds": 0.05}
        gateway = Gateway(engine, service="test")
        try:
            with pytest.raises(LLMError) as flaky:
                await gateway.generate(on("aurora-cautious", retry=few_tries), _ask("x"), stage="t")
            assert flaky.value.error_class == "retryable"
            hanging = on(
                "aurora-balanced",
                retry={**few_tries, "max_attempts": 2},
                timeouts={"connect_seconds": 2, "read_seconds": 0.3},
            )
            with pytest.raises(LLMError) as hung:
                await gateway.generate(hanging, _ask("x"), stage="t")
            assert "no answer in time" in str(hung.value)
            with pytest.raises(LLMDeferred) as broke:
                await gateway.generate(on("aurora-deferential"), _ask("x"), stage="t")
            assert broke.value.error_class == "terminal_quota"
        finally:
            await gateway.aclose()
        served = await sim.stats()
    assert served["aurora-cautious"]["requests"] == 4
    assert (
        served["aurora-cautious"].get("overloaded", 0)
        + served["aurora-cautious"].get("truncated", 0)
        == 4
    )
    assert served["aurora-balanced"] == {"requests": 2, "hang": 2}
    assert served["aurora-deferential"] == {"requests": 1, "insufficient_quota": 1}
