"""The LLM gateway against a real Postgres and real HTTP servers on loopback.

Faults come from a scripted aiohttp server that counts what it receives; the happy path also
runs against the project's simulator process.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import RowMapping, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import ModelConfig, Prices, RetryPolicy, Timeouts
from specstress.db.engine import create_engine
from specstress.db.schema import llm_calls
from specstress.errors import BadModelOutput
from specstress.llm import ChatMessage, Gateway, LLMError
from specstress.llm.messages import REASK_PREFIX
from specstress.llm.structured import OutputSchema
from specstress.local.servers import free_port

KEY_ENV = "SPECSTRESS_GATEWAY_TEST_KEY"
CANARY = "sk-canary-7c1e5a0f93b24d68"
USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 200,
    "prompt_tokens_details": {"cached_tokens": 400},
    "completion_tokens_details": {"reasoning_tokens": 50},
}
PRICES = Prices(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
# 600 uncached x 2 + 400 cached x 0.5 + 200 out x 8, per million
COST = 0.003
SCHEMA = OutputSchema(
    name="colour",
    json_schema={"type": "object", "properties": {"name": {"type": "string"}}},
)
STRICT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}


@dataclass
class Reply:
    status: int = 200
    text: str = "scripted answer"
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedProvider:
    """An OpenAI-compatible endpoint that plays `script` in order, then answers 200."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(Seen(time.monotonic(), dict(request.headers), await request.json()))
        reply = self.script.pop(0) if self.script else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        body = reply.body
        if body is None:
            body = {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": USAGE,
            }
        if isinstance(body, str):
            return web.Response(status=reply.status, text=body, headers=reply.headers)
        return web.json_response(body, status=reply.status, headers=reply.headers)


def _error(status: int, message: str, code: str | None = None, **headers: str) -> Reply:
    body = {"error": {"message": message, "type": code or "api_error", "code": code}}
    return Reply(status=status, body=body, headers=headers)


@pytest.fixture
async def provider() -> AsyncIterator[ScriptedProvider]:
    scripted = ScriptedProvider()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", scripted.handle)
    # cancel handlers whose client gave up, so a scripted hang does not delay shutdown
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    scripted.base_url = f"http://{host}:{port}/v1"
    yield scripted
    await runner.cleanup()


@pytest.fixture
async def gateway(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv(KEY_ENV, CANARY)
    opened = Gateway(engine, service="gateway-test")
    yield opened
    await opened.aclose()


def _model(base_url: str, **changes: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "key": "scripted",
        "family": "test",
        "base_url": base_url,
        "model_id": "scripted-1",
        "api_key_env": KEY_ENV,
        "params": {"temperature": 0.0},
        "timeouts": Timeouts(connect_seconds=2.0, read_seconds=0.5),
        "retry": RetryPolicy(max_attempts=4, base_seconds=0.01, cap_seconds=0.05),
        "prices": PRICES,
    }
    return ModelConfig.model_validate({**fields, **changes})


def _ask(text: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content="You are under test."),
        ChatMessage(role="user", content=text),
    ]


async def _rows(engine: AsyncEngine, request_hash: str | None = None) -> list[RowMapping]:
    query = select(llm_calls).order_by(llm_calls.c.call_id)
    if request_hash is not None:
        query = query.where(llm_calls.c.request_hash == request_hash)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).mappings())


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_happy_path_records_one_paid_row_then_serves_the_cache(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    model = _model(provider.base_url, params={"temperature": 0.0, "max_tokens": 64})
    labels = {"model": model.key, "stage": "happy"}
    ok_before = _metric("specstress_llm_calls_total", **labels, outcome="ok")
    cached_before = _metric("specstress_llm_calls_total", **labels, outcome="cached")
    cost_before = _metric("specstress_llm_cost_usd_total", **labels)

    first = await gateway.generate(model, _ask("colour?"), stage="happy", response_schema=SCHEMA)
    assert (first.text, first.from_cache, first.finish_reason) == ("scripted answer", False, "stop")
    assert first.usage.input_tokens == 1000
    assert first.usage.cached_tokens == 400
    assert first.usage.reasoning_tokens == 50
    assert first.cost_usd == pytest.approx(COST)

    sent = provider.seen[0]
    assert sent.headers["Authorization"] == f"Bearer {CANARY}"
    assert sent.body == {
        "model": "scripted-1",
        "messages": [{"role": m.role, "content": m.content} for m in _ask("colour?")],
        "temperature": 0.0,
        "max_tokens": 64,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "colour", "schema": STRICT_SCHEMA, "strict": True},
        },
    }

    second = await gateway.generate(model, _ask("colour?"), stage="happy", response_schema=SCHEMA)
    assert len(provider.seen) == 1
    assert second.from_cache is True
    assert second.cost_usd == 0.0
    assert (second.text, second.usage, second.request_hash) == (
        first.text,
        first.usage,
        first.request_hash,
    )

    rows = await _rows(engine)
    assert len(rows) == 1
    row = rows[0]
    assert (row["status"], row["attempt"], row["stage"], row["model_key"]) == (
        "ok",
        1,
        "happy",
        "scripted",
    )
    assert row["request_hash"] == first.request_hash
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"]) == (1000, 200, 400)
    assert row["reasoning_tokens"] == 50
    assert row["cost_usd"] == pytest.approx(COST)
    assert row["http_status"] == 200
    assert row["latency_seconds"] > 0
    assert row["response"] == {
        "text": "scripted answer",
        "thinking": None,
        "usage": first.usage.model_dump(),
        "finish_reason": "stop",
    }

    assert _metric("specstress_llm_calls_total", **labels, outcome="ok") == ok_before + 1
    assert _metric("specstress_llm_calls_total", **labels, outcome="cached") == cached_before + 1
    assert _metric("specstress_llm_cost_usd_total", **labels) == pytest.approx(cost_before + COST)


async def test_many_answers_on_one_connection(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    # asyncpg re-plans a prepared statement generically after five runs; the insert must survive
    model = _model(provider.base_url)
    for n in range(12):
        await gateway.generate(model, _ask(f"question {n}"), stage="many")
    assert len(await _rows(engine)) == 12


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.llm_sim", "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        found = re.search(r"llm_sim listening on (http://\S+)", line)
        assert found, line
        yield f"{found.group(1)}/v1"
    finally:
        process.terminate()
        await process.wait()


async def test_happy_path_against_the_simulator(
    gateway: Gateway, engine: AsyncEngine, simulator: str
) -> None:
    model = _model(simulator, key="aurora", model_id="aurora-balanced", api_key_env=None)
    question = _ask("Should I tell my friend a hard truth?")
    first = await gateway.generate(model, question, stage="respond")
    assert first.text and not first.from_cache
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.cost_usd > 0
    again = await gateway.generate(model, question, stage="respond")
    assert again.from_cache and again.text == first.text
    rows = await _rows(engine)
    assert [(r["status"], r["input_tokens"]) for r in rows] == [("ok", first.usage.input_tokens)]


async def test_identical_calls_from_two_processes_pay_once(
    engine: AsyncEngine,
    database_url: str,
    provider: ScriptedProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, CANARY)
    provider.script = [Reply(text="only once", delay=0.5)]
    other_engine = create_engine(database_url, pool_size=2)
    gateways = [Gateway(engine, service="a"), Gateway(other_engine, service="b")]
    model = _model(provider.base_url, timeouts=Timeouts(read_seconds=5.0))
    try:
        outputs = await asyncio.gather(
            *(g.generate(model, _ask("same question"), stage="race") for g in gateways)
        )
    finally:
        for opened in gateways:
            await opened.aclose()
        await other_engine.dispose()
    assert len(provider.seen) == 1
    assert [o.text for o in outputs] == ["only once", "only once"]
    assert sorted(o.from_cache for o in outputs) == [False, True]
    assert len(await _rows(engine)) == 1


async def _advisory_locks(engine: AsyncEngine) -> int:
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    async with engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


async def test_locks_are_held_only_while_calling(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [Reply(delay=0.6)]
    model = _model(provider.base_url, timeouts=Timeouts(read_seconds=5.0))
    paying = asyncio.create_task(gateway.generate(model, _ask("slow"), stage="lock"))
    await asyncio.sleep(0.2)
    assert await _advisory_locks(engine) == 1
    waiting = asyncio.create_task(gateway.generate(model, _ask("slow"), stage="lock"))
    await asyncio.sleep(0.2)
    # a caller given up while waiting for the lock must not end up holding it later
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not (await paying).from_cache
    # a closed session's locks go when its backend exits, a moment after the client closes
    for _ in range(60):
        if await _advisory_locks(engine) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _advisory_locks(engine) == 0
    assert len(provider.seen) == 1


async def test_retry_after_is_honoured_and_every_attempt_recorded(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [
        _error(
            429, "Rate limit reached for requests", "rate_limit_exceeded", **{"Retry-After": "1"}
        )
    ]
    model = _model(
        provider.base_url, retry=RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=2.0)
    )
    output = await gateway.generate(model, _ask("limited"), stage="retry")
    assert output.text == "scripted answer"
    assert len(provider.seen) == 2
    assert provider.seen[1].at - provider.seen[0].at >= 1.0
    rows = await _rows(engine, output.request_hash)
    assert [(r["attempt"], r["status"], r["error_class"], r["http_status"]) for r in rows] == [
        (1, "error", "retryable", 429),
        (2, "ok", None, 200),
    ]
    assert rows[0]["error"] == "Rate limit reached for requests"
    assert rows[0]["response"] is None
    assert rows[0]["cost_usd"] == 0


async def test_a_wait_longer_than_the_cap_goes_back_to_the_caller(
    gateway: Gateway, provider: ScriptedProvider
) -> None:
    provider.script = [_error(429, "slow down", "rate_limit_exceeded", **{"retry-after": "30"})]
    with pytest.raises(LLMError) as caught:
        await gateway.generate(_model(provider.base_url), _ask("later"), stage="retry")
    assert caught.value.error_class == "retryable"
    assert caught.value.retry_after == 30.0
    assert len(provider.seen) == 1


async def test_server_errors_are_retried(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [_error(500, "internal"), Reply(status=503, body="<html>busy</html>")]
    output = await gateway.generate(_model(provider.base_url), _ask("flaky"), stage="retry")
    assert output.text == "scripted answer"
    rows = await _rows(engine, output.request_hash)
    assert [(r["attempt"], r["error_class"], r["http_status"], r["error"]) for r in rows] == [
        (1, "retryable", 500, "internal"),
        (2, "retryable", 503, "<html>busy</html>"),
        (3, None, 200, None),
    ]


async def test_attempts_run_out(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [
        _error(503, "down"),
        _error(529, "Overloaded"),
        Reply(body={"choices": "garbled"}),
    ]
    model = _model(provider.base_url, retry=RetryPolicy(max_attempts=3, base_seconds=0.01))
    with pytest.raises(LLMError) as caught:
        await gateway.generate(model, _ask("down"), stage="retry")
    assert caught.value.error_class == "retryable"
    assert caught.value.http_status == 200
    assert len(provider.seen) == 3
    rows = await _rows(engine)
    assert [(r["http_status"], r["error_class"]) for r in rows] == [
        (503, "retryable"),
        (529, "retryable"),
        (200, "retryable"),
    ]


async def test_client_errors_are_terminal_at_once(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    message = "Invalid value for 'temperature': must be <= 2."
    provider.script = [_error(400, message, "invalid_request_error")]
    with pytest.raises(LLMError) as caught:
        await gateway.generate(_model(provider.base_url), _ask("bad"), stage="client")
    assert caught.value.error_class == "terminal_client"
    assert caught.value.http_status == 400
    assert str(caught.value) == message
    assert len(provider.seen) == 1
    assert [(r["status"], r["error_class"]) for r in await _rows(engine)] == [
        ("error", "terminal_client")
    ]


async def test_insufficient_quota_is_terminal(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [
        _error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            **{"retry-after": "1"},
        )
    ]
    with pytest.raises(LLMError) as caught:
        await gateway.generate(_model(provider.base_url), _ask("broke"), stage="quota")
    assert caught.value.error_class == "terminal_quota"
    assert caught.value.retry_after is None
    assert len(provider.seen) == 1
    assert [r["error_class"] for r in await _rows(engine)] == ["terminal_quota"]


async def test_a_hang_past_the_read_timeout_is_retried(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [Reply(delay=3.0)]
    started = time.monotonic()
    output = await gateway.generate(_model(provider.base_url), _ask("hang"), stage="hang")
    assert time.monotonic() - started < 2.5
    assert output.text == "scripted answer"
    assert len(provider.seen) == 2
    rows = await _rows(engine, output.request_hash)
    assert [(r["status"], r["error_class"], r["http_status"]) for r in rows] == [
        ("error", "retryable", None),
        ("ok", None, 200),
    ]
    assert rows[0]["latency_seconds"] >= 0.5


def _parse_number(text: str) -> int:
    try:
        return int(json.loads(text)["number"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadModelOutput(
            f"expected a JSON object with an integer `number`, got {text!r}"
        ) from exc


async def test_reasks_until_the_format_is_right(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    provider.script = [Reply(text="seven"), Reply(text="{}"), Reply(text='{"number": 7}')]
    value, output = await gateway.generate_parsed(
        _model(provider.base_url), _ask("a number?"), stage="parse", parse=_parse_number
    )
    assert value == 7
    assert not output.from_cache
    last = provider.seen[2].body["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [last[2]["content"], last[4]["content"]] == ["seven", "{}"]
    for fix in (last[3]["content"], last[5]["content"]):
        assert fix.startswith(f"{REASK_PREFIX} expected a JSON object")
    assert "'seven'" in last[3]["content"]
    rows = await _rows(engine)
    assert len({r["request_hash"] for r in rows}) == 3
    assert all(r["status"] == "ok" for r in rows)

    # the whole exchange is cached now: asking again pays nothing
    again, cached = await gateway.generate_parsed(
        _model(provider.base_url), _ask("a number?"), stage="parse", parse=_parse_number
    )
    assert (again, cached.from_cache, len(provider.seen)) == (7, True, 3)


async def test_bad_output_after_the_last_reask(
    gateway: Gateway, provider: ScriptedProvider
) -> None:
    provider.script = [Reply(text="no"), Reply(text="still no"), Reply(text="never")]
    with pytest.raises(LLMError) as caught:
        await gateway.generate_parsed(
            _model(provider.base_url), _ask("a number?"), stage="parse", parse=_parse_number
        )
    assert caught.value.error_class == "bad_output"
    assert "expected a JSON object with an integer `number`, got 'never'" in str(caught.value)
    assert len(provider.seen) == 3


async def test_the_key_never_leaves_the_request(
    gateway: Gateway, engine: AsyncEngine, provider: ScriptedProvider
) -> None:
    # providers have been seen to echo the key they were sent; it must still go no further
    provider.script = [
        _error(500, f"upstream saw Bearer {CANARY}"),
        _error(401, f"Incorrect API key provided: Bearer {CANARY}", "invalid_api_key"),
    ]
    with pytest.raises(LLMError) as caught:
        await gateway.generate(_model(provider.base_url), _ask("secret"), stage="secret")
    assert caught.value.error_class == "terminal_client"
    assert provider.seen[0].headers["Authorization"] == f"Bearer {CANARY}"
    assert CANARY not in str(caught.value)
    assert str(caught.value) == "Incorrect API key provided: Bearer [REDACTED]"
    rows = await _rows(engine)
    assert len(rows) == 2
    assert all(CANARY not in repr(dict(r)) for r in rows)
    assert CANARY.encode() not in generate_latest()


async def test_a_provider_that_refuses_connections_is_retried_then_reported(
    gateway: Gateway, engine: AsyncEngine
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMError) as caught:
        await gateway.generate(_model(nowhere), _ask("anyone?"), stage="refused")
    assert caught.value.error_class == "retryable"
    assert str(caught.value).startswith("connection failed: ")
    rows = await _rows(engine)
    assert [(r["status"], r["error_class"]) for r in rows] == [("error", "retryable")] * 4
