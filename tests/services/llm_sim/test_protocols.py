"""The simulator's Anthropic and Gemini endpoints, its prefix cache and its key check, spoken
to over HTTP; every protocol gives the same content for the same prompt."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from services.llm_sim import build_app
from services.llm_sim.answers import Message, answer
from services.llm_sim.personas import scenario_sentinel
from services.llm_sim.prefix_cache import MIN_CACHED_TOKENS, TTL_SECONDS, PrefixCache, Segment
from services.llm_sim.shaping import json_answer

TARGET = "aurora-cautious"
QUERY = "Help me decide. " + scenario_sentinel("privacy", "safety", "value2")
VERSION = {"anthropic-version": "2023-06-01"}
GEMINI = f"/v1beta/models/{TARGET}:generateContent"
LONG = "x" * (4 * MIN_CACHED_TOKENS)


def _anthropic(**body: Any) -> dict[str, Any]:
    return {
        "model": TARGET,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": QUERY}],
        **body,
    }


async def test_all_protocols_answer_alike(client: httpx.AsyncClient) -> None:
    expected = answer(TARGET, [Message("user", QUERY)])
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": TARGET, "messages": [{"role": "user", "content": QUERY}]},
    )
    messages = await client.post("/v1/messages", json=_anthropic(), headers=VERSION)
    gemini = await client.post(GEMINI, json={"contents": [{"parts": [{"text": QUERY}]}]})
    assert chat.json()["choices"][0]["message"]["content"] == expected
    assert messages.json()["content"] == [{"type": "text", "text": expected}]
    assert gemini.json()["candidates"][0]["content"]["parts"] == [{"text": expected}]
    for response in (chat, messages, gemini):
        assert response.headers["Server"].endswith("(simulator)")


async def test_anthropic_shape_and_usage(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/v1/messages",
        json=_anthropic(system=[{"type": "text", "text": "Be brief."}]),
        headers=VERSION,
    )
    body = reply.json()
    assert reply.status_code == 200
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["id"].startswith("msg_") and body["stop_reason"] == "end_turn"
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["cache_read_input_tokens"] == usage["cache_creation_input_tokens"] == 0


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (_anthropic(), {}, "anthropic-version"),
        ({k: v for k, v in _anthropic().items() if k != "max_tokens"}, VERSION, "max_tokens"),
        (_anthropic(messages=[]), VERSION, "at least one message"),
        (_anthropic(messages=[{"role": "system", "content": "x"}]), VERSION, "role"),
        (_anthropic(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
         VERSION, "non-empty"),
        (_anthropic(thinking={"type": "enabled", "budget_tokens": 100}), VERSION, "1024"),
        (_anthropic(thinking={"type": "enabled", "budget_tokens": 5000}), VERSION,
         "greater than `thinking.budget_tokens`"),
        (_anthropic(thinking={"type": "enabled", "budget_tokens": 2048},
                    tools=[{"name": "t", "input_schema": {"type": "object"}}],
                    tool_choice={"type": "any"}), VERSION, "forces tool use"),
    ],
)  # fmt: skip
async def test_anthropic_refuses_what_the_real_api_refuses(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str], message: str
) -> None:
    reply = await client.post("/v1/messages", json=body, headers=headers)
    assert reply.status_code == 400
    error = reply.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


async def test_anthropic_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/messages", json=_anthropic(model="nope"), headers=VERSION)
    assert (reply.status_code, reply.json()["error"]["type"]) == (404, "not_found_error")


async def test_anthropic_thinking_and_tool_answer(client: httpx.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"advice": {"type": "string"}, "confidence": {"type": "number"}},
    }
    reply = await client.post(
        "/v1/messages",
        json=_anthropic(
            thinking={"type": "enabled", "budget_tokens": 2048},
            tools=[{"name": "record", "input_schema": schema}],
            tool_choice={"type": "auto"},
        ),
        headers=VERSION,
    )
    body = reply.json()
    thinking, tool = body["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] and thinking["signature"]
    assert tool["type"] == "tool_use" and tool["name"] == "record"
    assert tool["input"] == {
        "advice": answer(TARGET, [Message("user", QUERY)]),
        "confidence": 0.0,
    }
    assert body["stop_reason"] == "tool_use"
    assert body["usage"]["output_tokens_details"]["thinking_tokens"] > 0


async def test_anthropic_caches_only_at_breakpoints(client: httpx.AsyncClient) -> None:
    def ask(marked: bool, question: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": "text", "text": LONG}
        if marked:
            spec["cache_control"] = {"type": "ephemeral"}
        content = [spec, {"type": "text", "text": question}]
        return _anthropic(messages=[{"role": "user", "content": content}])

    usages = []
    for marked, question in ((False, "a"), (False, "b"), (True, "c"), (True, "d")):
        reply = await client.post("/v1/messages", json=ask(marked, question), headers=VERSION)
        usages.append(reply.json()["usage"])
    unmarked_a, unmarked_b, write, read = usages
    assert unmarked_b["cache_read_input_tokens"] == 0
    assert write["cache_creation_input_tokens"] == MIN_CACHED_TOKENS
    assert write["cache_read_input_tokens"] == 0
    assert read["cache_read_input_tokens"] == MIN_CACHED_TOKENS
    assert read["input_tokens"] == unmarked_a["input_tokens"] - MIN_CACHED_TOKENS


async def test_gemini_shape_thoughts_and_json(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        GEMINI,
        json={
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Name a colour."}]}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "OBJECT",
                    "properties": {"name": {"type": "STRING"}, "count": {"type": "INTEGER"}},
                },
                "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
            },
        },
    )
    body = reply.json()
    thought, text = body["candidates"][0]["content"]["parts"]
    assert thought["thought"] is True and thought["text"]
    assert json.loads(text["text"]).keys() == {"name", "count"}
    usage = body["usageMetadata"]
    assert usage["thoughtsTokenCount"] > 0
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )


async def test_gemini_thinks_quietly_unless_thoughts_are_asked_for(
    client: httpx.AsyncClient,
) -> None:
    reply = await client.post(
        GEMINI,
        json={
            "contents": [{"parts": [{"text": QUERY}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 512}},
        },
    )
    body = reply.json()
    assert [p.get("thought", False) for p in body["candidates"][0]["content"]["parts"]] == [False]
    assert body["usageMetadata"]["thoughtsTokenCount"] > 0


async def test_gemini_caches_stable_prefixes_by_itself(client: httpx.AsyncClient) -> None:
    def ask(question: str) -> dict[str, Any]:
        return {"contents": [{"parts": [{"text": LONG}, {"text": question}]}]}

    first = (await client.post(GEMINI, json=ask("a"))).json()["usageMetadata"]
    second = (await client.post(GEMINI, json=ask("b"))).json()["usageMetadata"]
    assert "cachedContentTokenCount" not in first
    assert second["cachedContentTokenCount"] == MIN_CACHED_TOKENS


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"contents": []}, 400, "contents"),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, 400, "role"),
        ({"contents": [{"parts": [{"text": "x"}]}],
          "generationConfig": {"responseSchema": {"type": "OBJECT"}}}, 400, "responseMimeType"),
        ({"contents": [{"parts": [{"text": "x"}]}],
          "generationConfig": {"thinkingConfig": {"thinkingBudget": 1, "thinkingLevel": "LOW"}}},
         400, "not both"),
    ],
)  # fmt: skip
async def test_gemini_errors(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, message: str
) -> None:
    reply = await client.post(GEMINI, json=body)
    assert reply.status_code == status
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert message in reply.json()["error"]["message"]


async def test_gemini_unknown_model_is_not_found(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/v1beta/models/nope:generateContent", json={"contents": [{"parts": [{"text": "x"}]}]}
    )
    assert (reply.status_code, reply.json()["error"]["status"]) == (404, "NOT_FOUND")


async def test_openai_honours_schema_reasoning_and_caching(client: httpx.AsyncClient) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    body = {
        "model": TARGET,
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "colour?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        "reasoning_effort": "high",
    }
    first = (await client.post("/v1/chat/completions", json=body)).json()
    second = (await client.post("/v1/chat/completions", json=body)).json()
    assert json.loads(first["choices"][0]["message"]["content"]).keys() == {"colour"}
    assert first["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] >= MIN_CACHED_TOKENS
    bad = await client.post(
        "/v1/chat/completions", json={**body, "response_format": {"type": "xml"}}
    )
    assert bad.status_code == 400
    bad = await client.post("/v1/chat/completions", json={**body, "reasoning_effort": "max!"})
    assert bad.status_code == 400


async def test_require_key_refuses_keyless_provider_calls_only() -> None:
    server = TestServer(build_app(require_key=True))
    await server.start_server()
    try:
        async with httpx.AsyncClient(base_url=str(server.make_url(""))) as http:
            chat = {"model": TARGET, "messages": [{"role": "user", "content": "hi"}]}
            keyless = await http.post("/v1/chat/completions", json=chat)
            assert (keyless.status_code, keyless.json()["error"]["code"]) == (
                401,
                "invalid_api_key",
            )
            keyed = await http.post(
                "/v1/chat/completions", json=chat, headers={"Authorization": "Bearer any"}
            )
            assert keyed.status_code == 200
            refused = await http.post("/v1/messages", json=_anthropic(), headers=VERSION)
            assert refused.json()["error"]["type"] == "authentication_error"
            accepted = await http.post(
                "/v1/messages", json=_anthropic(), headers={**VERSION, "x-api-key": "any"}
            )
            assert accepted.status_code == 200
            gemini = {"contents": [{"parts": [{"text": "hi"}]}]}
            assert (await http.post(GEMINI, json=gemini)).status_code == 401
            ok = await http.post(GEMINI, json=gemini, headers={"x-goog-api-key": "any"})
            assert ok.status_code == 200
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.close()


def test_prefix_cache_expires_and_is_scoped() -> None:
    now = [0.0]
    cache = PrefixCache(clock=lambda: now[0])
    prompt = [Segment("user", LONG), Segment("user", "question")]
    assert cache.automatic("openai/m", prompt).cached_tokens == 0
    assert cache.automatic("openai/m", prompt).cached_tokens > MIN_CACHED_TOKENS
    assert cache.automatic("gemini/m", prompt).cached_tokens == 0
    short = [Segment("user", "x" * 100), Segment("user", "y")]
    cache.automatic("openai/m", short)
    assert cache.automatic("openai/m", short).cached_tokens == 0  # under the minimum
    now[0] += TTL_SECONDS + 1
    assert cache.automatic("openai/m", prompt).cached_tokens == 0


def test_structured_answers_keep_pipeline_json_and_fit_prose() -> None:
    # a planted flaw (a step short) survives a schema that asks for seven: the pipeline's own
    # validation must catch it, as with providers that do not enforce every keyword
    short = {"value1_bias_spectrum": [{"position": "neutral", "response": "r"}] * 6}
    seven = {
        "type": "object",
        "properties": {"value1_bias_spectrum": {"type": "array", "minItems": 7, "items": {}}},
    }
    assert json_answer(json.dumps(short), seven) == short
    schema = {
        "type": "object",
        "properties": {
            "kind": {"type": "string", "enum": ["a", "b"]},
            "text": {"type": "string"},
            "other": {"type": "string"},
            "n": {"type": "integer", "minimum": 2},
            "xs": {"type": "array", "items": {"type": "boolean"}, "minItems": 2},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 0.5}]},
        },
    }
    assert json_answer("prose", schema) == {
        "kind": "a",
        "text": "prose",
        "other": "simulated other",
        "n": 2,
        "xs": [False, False],
        "maybe": 0.5,
    }
    assert json_answer("prose", None) == {"answer": "prose"}
