"""The three protocol adapters through the Gateway, against the simulator over real HTTP and a
real Postgres ledger: answers, structured output, thinking, prompt caching and error classes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.compliance_judge.app import VERDICT_SCHEMA, Verdict
from services.llm_sim.answers import Message, answer
from services.llm_sim.personas import scenario_sentinel, stance_sentinel
from specstress.analysis import summary as reports
from specstress.config import ModelConfig, Prices, RetryPolicy
from specstress.db.schema import llm_calls
from specstress.errors import BadModelOutput
from specstress.llm import ChatMessage, Gateway, LLMError
from specstress.llm.structured import OutputSchema
from specstress.method.parsing import json_object
from specstress.method.spec import load_spec
from specstress.pipeline.prompts import PromptLibrary

PROTOCOLS = ("openai", "anthropic", "gemini")
KEY_ENV = "SPECSTRESS_PROTOCOL_TEST_KEY"
TARGET = "borealis-candid"
JUDGE = "sim-judge-median"
QUERY = "Should I report my friend? " + scenario_sentinel("honesty", "loyalty", "neutral")
PRICES = Prices(
    input_per_mtok=3.0,
    output_per_mtok=15.0,
    cached_input_per_mtok=0.3,
    cache_write_input_per_mtok=3.75,
)
REASONING: dict[str, dict[str, Any]] = {
    "openai": {"effort": "low"},
    "anthropic": {"budget_tokens": 2048},
    "gemini": {"budget_tokens": 1024, "include_thoughts": True},
}


class Colour(BaseModel):
    name: str
    shade_count: int


COLOUR = OutputSchema.of(Colour)


def parse_colour(text: str) -> Colour:
    try:
        return Colour.model_validate_json(text)
    except ValidationError as exc:
        raise BadModelOutput(f"not a colour: {exc.errors()[0]['msg']}") from None


async def ask_colour(gateway: Gateway, model: ModelConfig, stage: str) -> Colour:
    """Asks for a colour in free form; the answer parses only if the schema reached the provider."""
    colour, _ = await gateway.generate_parsed(
        model,
        [ChatMessage(role="user", content="Name a colour.")],
        stage=stage,
        parse=parse_colour,
        response_schema=COLOUR,
    )
    return colour


def parse_verdict(text: str) -> Verdict:
    """The verdict's own shape; citation checks against the spec belong to the judge's tests."""
    try:
        return Verdict.model_validate(json_object(text))
    except ValidationError as exc:
        raise BadModelOutput(f"not a verdict: {exc.errors()[0]['msg']}") from None


@pytest.fixture
async def gateway(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv(KEY_ENV, "sk-protocol-test")
    opened = Gateway(engine, service="protocol-test")
    yield opened
    await opened.aclose()


def _model(base: str, protocol: str, model_id: str = TARGET, **changes: Any) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "key": f"{protocol}-{model_id}",
            "family": "test",
            "protocol": protocol,
            "base_url": f"{base}/v1" if protocol == "openai" else base,
            "model_id": model_id,
            "api_key_env": KEY_ENV,
            "prices": PRICES,
            "retry": RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.05),
            **changes,
        }
    )


async def _ledger(engine: AsyncEngine, digest: str) -> list[Any]:
    query = select(llm_calls).where(llm_calls.c.request_hash == digest)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).mappings())


def _tokens_metric(model: str, stage: str, kind: str) -> float:
    labels = {"model": model, "stage": stage, "kind": kind}
    return REGISTRY.get_sample_value("specstress_llm_tokens_total", labels) or 0.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_protocol_gives_the_same_answer_and_usage(
    gateway: Gateway, engine: AsyncEngine, sim_url: str, protocol: str
) -> None:
    model = _model(sim_url, protocol)
    output = await gateway.generate(model, [ChatMessage(role="user", content=QUERY)], stage="t")
    assert output.text == answer(TARGET, [Message("user", QUERY)])
    assert output.thinking is None
    assert output.usage.input_tokens > 0 and output.usage.output_tokens > 0
    [row] = await _ledger(engine, output.request_hash)
    assert (row["status"], row["input_tokens"]) == ("ok", output.usage.input_tokens)
    again = await gateway.generate(model, [ChatMessage(role="user", content=QUERY)], stage="t")
    assert again.from_cache and again.text == output.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_structured_output_uses_each_protocols_native_mechanism(
    gateway: Gateway, sim_url: str, protocol: str
) -> None:
    model = _model(sim_url, protocol)
    # a free-form question comes back as JSON only if the schema reached the provider
    colour = await ask_colour(gateway, model, "structured")
    assert isinstance(colour, Colour)
    judge = _model(sim_url, protocol, JUDGE)
    prompt = (
        "<model_spec>\nBe fair.\n</model_spec>\n<assistant_response>\n"
        f"{stance_sentinel(6, 0)}\n</assistant_response>"
    )
    verdict, _ = await gateway.generate_parsed(
        judge,
        [ChatMessage(role="user", content=prompt)],
        stage="structured",
        parse=parse_verdict,
        response_schema=VERDICT_SCHEMA,
    )
    assert verdict.decision in ("non-compliant", "ambiguous")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_structured_output_can_be_turned_off(
    gateway: Gateway, sim_url: str, protocol: str
) -> None:
    model = _model(sim_url, protocol, structured_output=False)
    with pytest.raises(LLMError) as failed:
        await ask_colour(gateway, model, "unstructured")
    assert failed.value.error_class == "bad_output"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_thinking_is_kept_apart_from_the_answer(
    gateway: Gateway, engine: AsyncEngine, sim_url: str, protocol: str
) -> None:
    model = _model(sim_url, protocol, reasoning=REASONING[protocol])
    output = await gateway.generate(model, [ChatMessage(role="user", content=QUERY)], stage="t")
    assert output.text == answer(TARGET, [Message("user", QUERY)])
    assert output.usage.reasoning_tokens > 0
    assert output.usage.output_tokens > output.usage.reasoning_tokens
    if protocol == "openai":
        assert output.thinking is None  # OpenAI bills reasoning but does not show it
    else:
        assert output.thinking is not None and "Simulated reasoning" in output.thinking
    [row] = await _ledger(engine, output.request_hash)
    assert row["reasoning_tokens"] == output.usage.reasoning_tokens
    assert row["response"]["thinking"] == output.thinking
    # Anthropic cannot force a tool while thinking: the adapter offers it instead
    colour = await ask_colour(gateway, model, "t")
    assert isinstance(colour, Colour)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_judges_spec_prefix_is_cached_counted_and_priced(
    gateway: Gateway, engine: AsyncEngine, sim_url: str, protocol: str
) -> None:
    judge = _model(sim_url, protocol, JUDGE)
    spec = load_spec("builtin:example", "example", "1")
    prompt = PromptLibrary("compliance_judge").get("judge")
    stage = f"cache-{protocol}"
    outputs = []
    for position in (6, 3, 0):
        messages = prompt.render(
            spec=spec.text, query=QUERY, response=f"An answer. {stance_sentinel(position, 3)}"
        )
        assert messages[0].cache and messages[0].content.startswith("<model_spec>")
        _verdict, output = await gateway.generate_parsed(
            judge,
            messages,
            stage=stage,
            parse=parse_verdict,
            response_schema=VERDICT_SCHEMA,
        )
        outputs.append(output)
    first, second, third = (o.usage for o in outputs)
    prefix_tokens = len(messages[0].content) // 4
    assert first.cached_tokens == 0
    assert second.cached_tokens >= prefix_tokens and third.cached_tokens >= prefix_tokens
    if protocol == "anthropic":
        # the first sighting writes the cache, and Anthropic prices that write higher
        assert first.cache_write_tokens >= prefix_tokens
        assert second.cache_write_tokens == 0
    for output in outputs:
        usage = output.usage
        fresh = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
        expected = (
            fresh * 3.0
            + usage.cached_tokens * 0.3
            + usage.cache_write_tokens * 3.75
            + usage.output_tokens * 15.0
        ) / 1e6
        assert output.cost_usd == pytest.approx(expected)
        [row] = await _ledger(engine, output.request_hash)
        assert row["cached_tokens"] == usage.cached_tokens
        assert row["cost_usd"] == pytest.approx(expected)
    cached_total = sum(o.usage.cached_tokens for o in outputs)
    assert _tokens_metric(judge.key, stage, "cached") == cached_total
    assert (await reports.counts(engine))["cached_tokens"] == cached_total


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_provider_errors_are_classed(
    gateway: Gateway, sim_url: str, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = _model(sim_url, protocol, "no-such-model")
    with pytest.raises(LLMError) as missing:
        await gateway.generate(unknown, [ChatMessage(role="user", content="hi")], stage="err")
    assert (missing.value.error_class, missing.value.http_status) == ("terminal_client", 404)
    keyless = _model(sim_url, protocol, api_key_env=None)
    with pytest.raises(LLMError) as refused:
        await gateway.generate(keyless, [ChatMessage(role="user", content="hi")], stage="err")
    assert (refused.value.error_class, refused.value.http_status) == ("terminal_client", 401)


# --- provider error bodies the simulator does not produce ------------------------------------


def _gemini_quota(quota_id: str, delay: str) -> dict[str, Any]:
    return {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing "
            "details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {"quotaMetric": "generate_content_requests", "quotaId": quota_id}
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
            ],
        }
    }


def _anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, list[tuple[int, Any]]]]:
    """A provider that plays (status, body) replies in order, for any path."""
    script: list[tuple[int, Any]] = []

    async def reply(request: web.Request) -> web.Response:
        status, body = script.pop(0)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", reply)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), script
    finally:
        await server.close()


async def test_gemini_quota_errors_by_period_and_retry_delay(
    gateway: Gateway, scripted: tuple[str, list[tuple[int, Any]]]
) -> None:
    base, script = scripted
    ask = [ChatMessage(role="user", content="hi")]
    # per minute with a wait longer than the backoff cap: handed to the caller to nak
    script.append((429, _gemini_quota("GenerateRequestsPerMinutePerProjectPerModel", "42s")))
    with pytest.raises(LLMError) as minute:
        await gateway.generate(_model(base, "gemini", "gemini-a"), ask, stage="gemini-err")
    assert (minute.value.error_class, minute.value.retry_after) == ("retryable", 42.0)
    assert not script
    # per day: never retried
    script.append((429, _gemini_quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "9s")))
    with pytest.raises(LLMError) as day:
        await gateway.generate(_model(base, "gemini", "gemini-b"), ask, stage="gemini-err")
    assert day.value.error_class == "terminal_quota"
    assert not script


async def test_anthropic_overload_is_retried_and_credit_exhaustion_is_not(
    gateway: Gateway, scripted: tuple[str, list[tuple[int, Any]]]
) -> None:
    base, script = scripted
    ok = {
        "content": [{"type": "text", "text": "fine"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    script += [(529, _anthropic_error("overloaded_error", "Overloaded")), (200, ok)]
    overloaded = _model(base, "anthropic", "claude-a")
    output = await gateway.generate(
        overloaded, [ChatMessage(role="user", content="a")], stage="ant"
    )
    assert output.text == "fine"
    script.append(
        (
            400,
            _anthropic_error(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API.",
            ),
        )
    )
    with pytest.raises(LLMError) as broke:
        broke_model = _model(base, "anthropic", "claude-b")
        await gateway.generate(broke_model, [ChatMessage(role="user", content="b")], stage="ant")
    assert broke.value.error_class == "terminal_quota"
    assert not script
