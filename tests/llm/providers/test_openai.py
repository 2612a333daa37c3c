"""The OpenAI-compatible adapter: request bodies, answers, usage and error bodies."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from specstress.config import ModelConfig
from specstress.llm import ChatMessage, Usage
from specstress.llm.protocol import Completion, MalformedResponseError
from specstress.llm.providers.openai import OpenAIChat
from specstress.llm.structured import OutputSchema

ADAPTER = OpenAIChat()
MODEL = ModelConfig(
    key="alpha",
    family="fam",
    base_url="http://127.0.0.1:9/v1/",
    model_id="model-1",
    api_key_env="ALPHA_KEY",
    params={"temperature": 0.2},
)
MESSAGES = [ChatMessage(role="user", content="hi")]


def _completion(message: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"choices": [{"message": message, "finish_reason": "stop"}]}
    if usage is not None:
        body["usage"] = usage
    return body


SCHEMA = OutputSchema(
    name="colour",
    json_schema={"type": "object", "properties": {"name": {"type": "string"}}},
)


def test_request_carries_model_params_format_and_bearer_key() -> None:
    request = ADAPTER.build_request(MODEL, MESSAGES, SCHEMA, SecretStr("sk-test-123"))
    assert request.url == "http://127.0.0.1:9/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test-123"
    assert request.body == {
        "temperature": 0.2,
        "model": "model-1",
        "messages": [{"role": "user", "content": "hi"}],
        # strict mode: every object closed, every property required
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "colour",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
    }


def test_reasoning_effort_and_cache_marks() -> None:
    model = MODEL.model_copy(update={"params": {}})
    thinking = ModelConfig.model_validate(
        {**model.model_dump(exclude={"reasoning"}), "reasoning": {"effort": "high"}}
    )
    marked = [ChatMessage(role="user", content="long shared prefix", cache=True), *MESSAGES]
    request = ADAPTER.build_request(thinking, marked, None, None)
    assert request.body["reasoning_effort"] == "high"
    # OpenAI caches stable prefixes by itself: the mark sends nothing
    assert request.body["messages"][0] == {"role": "user", "content": "long shared prefix"}


def test_request_without_key_or_format() -> None:
    request = ADAPTER.build_request(MODEL, MESSAGES, None, None)
    assert "Authorization" not in request.headers
    assert "response_format" not in request.body


def test_answer_with_full_usage_and_reasoning() -> None:
    completion = ADAPTER.parse_response(
        _completion(
            {"role": "assistant", "content": "blue", "reasoning_content": "sky"},
            {
                "prompt_tokens": 120,
                "completion_tokens": 30,
                "prompt_tokens_details": {"cached_tokens": 100},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
        )
    )
    usage = Usage(input_tokens=120, output_tokens=30, cached_tokens=100, reasoning_tokens=20)
    assert completion == Completion(text="blue", thinking="sky", usage=usage, finish_reason="stop")


def test_answer_variants() -> None:
    openrouter = ADAPTER.parse_response(
        _completion({"content": "x", "reasoning": "because"}, {"prompt_tokens": 5})
    )
    assert openrouter.thinking == "because"
    assert openrouter.usage == Usage(input_tokens=5, output_tokens=0)
    bare = ADAPTER.parse_response(_completion({"content": "x"}))
    assert bare.thinking is None
    assert bare.usage == Usage(input_tokens=0, output_tokens=0)
    nulls = ADAPTER.parse_response(
        _completion(
            {"content": None, "refusal": "I can't help with that."},
            {"prompt_tokens": 1, "prompt_tokens_details": None, "completion_tokens_details": {}},
        )
    )
    assert nulls.text == "I can't help with that."


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"choices": []},
        {"choices": [{"text": "legacy completion"}]},
        {"choices": [{"message": {"content": ["parts"]}}]},
        {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "many"}},
        ["not", "an", "object"],
    ],
)
def test_malformed_answers_are_rejected(payload: Any) -> None:
    with pytest.raises(MalformedResponseError):
        ADAPTER.parse_response(payload)


def test_an_error_inside_a_200_is_quoted() -> None:
    with pytest.raises(MalformedResponseError, match="upstream provider failed"):
        ADAPTER.parse_response({"error": {"message": "upstream provider failed", "code": 502}})


def test_error_bodies() -> None:
    openai = ADAPTER.parse_error(
        {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}},
        "",
    )
    assert openai.message == "quota"
    assert openai.codes == ("insufficient_quota", "insufficient_quota")
    vllm = ADAPTER.parse_error(
        {"object": "error", "message": "bad temp", "type": "BadRequestError", "code": 400}, ""
    )
    assert (vllm.message, vllm.codes) == ("bad temp", ("400", "BadRequestError"))
    assert ADAPTER.parse_error({"error": "plain words"}, "").message == "plain words"
    assert ADAPTER.parse_error({"detail": "Not Found"}, "").message == "Not Found"
    assert ADAPTER.parse_error(None, "<html>502</html>").message == "<html>502</html>"
    assert len(ADAPTER.parse_error(None, "x" * 10_000).message) == 500
