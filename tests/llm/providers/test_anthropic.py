"""The Anthropic Messages adapter: request bodies, answers, usage and error bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from specstress.config import ANTHROPIC_DEFAULT_MAX_TOKENS, ModelConfig
from specstress.llm import ChatMessage, Usage
from specstress.llm.protocol import MalformedResponseError
from specstress.llm.providers.anthropic import (
    ANTHROPIC_VERSION,
    MAX_CACHE_BREAKPOINTS,
    AnthropicMessages,
)
from specstress.llm.retry import classify
from specstress.llm.structured import OutputSchema
from tests.support.models import conversation, model_config

ADAPTER = AnthropicMessages()
SCHEMA = OutputSchema(
    name="verdict",
    json_schema={"type": "object", "properties": {"decision": {"type": "string"}}},
)


def _model(**changes: Any) -> ModelConfig:
    return model_config("anthropic", **changes)


def test_request_shape_headers_system_and_turns() -> None:
    messages = conversation("")
    request = ADAPTER.build_request(
        _model(params={"temperature": 0.0}), messages, None, SecretStr("sk-ant-1")
    )
    assert request.url == "https://api.anthropic.test/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-1"
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "Authorization" not in request.headers
    assert request.body == {
        "temperature": 0.0,
        "model": "claude-test",
        "max_tokens": ANTHROPIC_DEFAULT_MAX_TOKENS,
        "system": [{"type": "text", "text": "Be brief."}],
        # consecutive user messages share a turn; the empty assistant message is dropped
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "spec", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "question"},
                    {"type": "text", "text": "again"},
                ],
            }
        ],
    }


def test_base_url_may_end_in_v1_and_max_tokens_comes_from_params() -> None:
    model = _model(base_url="https://api.anthropic.test/v1/", params={"max_tokens": 300})
    request = ADAPTER.build_request(model, [ChatMessage(role="user", content="x")], None, None)
    assert request.url == "https://api.anthropic.test/v1/messages"
    assert request.body["max_tokens"] == 300
    assert "x-api-key" not in request.headers


def test_only_the_last_breakpoints_are_kept() -> None:
    messages = [ChatMessage(role="user", content=f"part {i}", cache=True) for i in range(6)]
    body = ADAPTER.build_request(_model(), messages, None, None).body
    blocks = body["messages"][0]["content"]
    marked = [b["text"] for b in blocks if "cache_control" in b]
    assert marked == [f"part {i}" for i in range(6 - MAX_CACHE_BREAKPOINTS, 6)]


def test_structured_output_is_a_forced_tool_unless_thinking() -> None:
    ask = [ChatMessage(role="user", content="judge")]
    body = ADAPTER.build_request(_model(), ask, SCHEMA, None).body
    assert body["tools"][0]["name"] == "verdict"
    assert body["tools"][0]["input_schema"] == SCHEMA.json_schema
    assert body["tool_choice"] == {"type": "tool", "name": "verdict"}
    thinking = _model(reasoning={"budget_tokens": 4000})
    body = ADAPTER.build_request(thinking, ask, SCHEMA, None).body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    assert body["tool_choice"] == {"type": "auto"}
    # room for the thinking budget and an answer
    assert body["max_tokens"] == 4000 + ANTHROPIC_DEFAULT_MAX_TOKENS


def test_answer_with_thinking_text_and_cache_usage() -> None:
    completion = ADAPTER.parse_response(
        {
            "type": "message",
            "content": [
                {"type": "thinking", "thinking": "weigh it", "signature": "abc"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "The answer"},
                {"type": "text", "text": " continues."},
            ],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 20,
                "output_tokens": 50,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 300,
                "output_tokens_details": {"thinking_tokens": 30},
            },
        }
    )
    assert completion.text == "The answer continues."
    assert completion.thinking == "weigh it"
    assert completion.finish_reason == "end_turn"
    assert completion.usage == Usage(
        input_tokens=1320,
        output_tokens=50,
        cached_tokens=1000,
        cache_write_tokens=300,
        reasoning_tokens=30,
    )


def test_tool_input_is_the_answer_text() -> None:
    completion = ADAPTER.parse_response(
        {
            "content": [
                {"type": "text", "text": "Here you go."},
                {"type": "tool_use", "id": "t1", "name": "verdict", "input": {"decision": "ok"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 5},
        }
    )
    assert json.loads(completion.text) == {"decision": "ok"}
    assert completion.thinking is None


@pytest.mark.parametrize(
    "payload",
    [{}, {"content": "text"}, {"content": [{"text": "no type"}]}, ["list"], None],
)
def test_malformed_answers_are_rejected(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        ADAPTER.parse_response(payload)


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (529, "overloaded_error", "Overloaded", "retryable"),
        (429, "rate_limit_error", "50,000 input tokens per minute", "retryable"),
        (500, "api_error", "Internal server error", "retryable"),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
            "terminal_quota",
        ),
        (402, "billing_error", "Billing issue", "terminal_quota"),
        (400, "invalid_request_error", "max_tokens: Field required", "terminal_client"),
        (401, "authentication_error", "invalid x-api-key", "terminal_client"),
        (404, "not_found_error", "model: nope", "terminal_client"),
    ],
)
def test_error_classes(status: int, kind: str, message: str, expected: str) -> None:
    error = ADAPTER.parse_error({"type": "error", "error": {"type": kind, "message": message}}, "")
    assert error.message == message
    assert error.codes == (kind,)
    assert classify(status, error) == expected


def test_error_body_that_is_not_json() -> None:
    error = ADAPTER.parse_error(None, "<html>bad gateway</html>")
    assert error.message == "<html>bad gateway</html>"
    assert classify(502, error) == "retryable"
