"""The Gemini generateContent adapter: request bodies, answers, usage and error bodies."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from specstress.config import ModelConfig
from specstress.llm import ChatMessage, Usage
from specstress.llm.protocol import MalformedResponseError
from specstress.llm.providers.gemini import GeminiGenerate, generate_url
from specstress.llm.retry import classify
from specstress.llm.structured import OutputSchema
from tests.support.models import conversation, model_config

ADAPTER = GeminiGenerate()
SCHEMA = OutputSchema(
    name="verdict",
    json_schema={
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "decision": {"type": "string", "enum": ["a", "b"]},
        },
        "required": ["reasoning", "decision"],
        "additionalProperties": False,
    },
)


def _model(**changes: Any) -> ModelConfig:
    return model_config("gemini", **changes)


@pytest.mark.parametrize(
    ("base", "model_id", "url"),
    [
        ("https://g.test", "gemini-x", "https://g.test/v1beta/models/gemini-x:generateContent"),
        (
            "https://g.test/",
            "models/gemini-x",
            "https://g.test/v1beta/models/gemini-x:generateContent",
        ),
        (
            "https://g.test/v1beta",
            "gemini-x",
            "https://g.test/v1beta/models/gemini-x:generateContent",
        ),
        ("https://g.test/v1", "gemini-x", "https://g.test/v1/models/gemini-x:generateContent"),
    ],
)
def test_urls(base: str, model_id: str, url: str) -> None:
    assert generate_url(base, model_id) == url


def test_request_shape_roles_params_and_key_header() -> None:
    model = _model(
        params={"temperature": 0.0, "maxOutputTokens": 256, "safetySettings": [{"x": 1}]}
    )
    messages = conversation("an answer")
    request = ADAPTER.build_request(model, messages, None, SecretStr("g-key"))
    assert request.headers["x-goog-api-key"] == "g-key"
    assert "key=" not in request.url  # the key never travels in the URL, where logs keep it
    assert request.body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "spec"}, {"text": "question"}]},
            {"role": "model", "parts": [{"text": "an answer"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
        "safetySettings": [{"x": 1}],
        "generationConfig": {"temperature": 0.0, "maxOutputTokens": 256},
    }


def test_schema_and_thinking_config() -> None:
    model = _model(reasoning={"budget_tokens": 2048, "include_thoughts": True})
    body = ADAPTER.build_request(model, [ChatMessage(role="user", content="q")], SCHEMA, None).body
    generation = body["generationConfig"]
    assert generation["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 2048}
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseSchema"] == {
        "type": "OBJECT",
        "properties": {
            "reasoning": {"type": "STRING"},
            "decision": {"type": "STRING", "enum": ["a", "b"]},
        },
        "propertyOrdering": ["reasoning", "decision"],
        "required": ["reasoning", "decision"],
    }
    levelled = _model(reasoning={"level": "low", "include_thoughts": False})
    body = ADAPTER.build_request(levelled, [ChatMessage(role="user", content="q")], None, None).body
    assert body["generationConfig"] == {
        "thinkingConfig": {"includeThoughts": False, "thinkingLevel": "LOW"}
    }


def test_answer_thoughts_apart_and_usage_normalised() -> None:
    completion = ADAPTER.parse_response(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "thinking it over", "thought": True},
                            {"text": "The answer"},
                            {"text": " continues."},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "candidatesTokenCount": 40,
                "cachedContentTokenCount": 1024,
                "thoughtsTokenCount": 60,
                "totalTokenCount": 1300,
            },
        }
    )
    assert completion.text == "The answer continues."
    assert completion.thinking == "thinking it over"
    assert completion.finish_reason == "STOP"
    assert completion.usage == Usage(
        input_tokens=1200, output_tokens=100, cached_tokens=1024, reasoning_tokens=60
    )


def test_a_stopped_candidate_is_an_empty_answer_and_a_blocked_prompt_is_malformed() -> None:
    stopped = ADAPTER.parse_response({"candidates": [{"finishReason": "SAFETY"}]})
    assert (stopped.text, stopped.finish_reason) == ("", "SAFETY")
    with pytest.raises(MalformedResponseError, match="PROHIBITED_CONTENT"):
        ADAPTER.parse_response({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    with pytest.raises(MalformedResponseError):
        ADAPTER.parse_response({"candidates": [{"content": {"parts": "text"}}]})


def _quota(quota_id: str, message: str, delay: str | None) -> dict[str, Any]:
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generativelanguage/requests", "quotaId": quota_id}],
        }
    ]
    if delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return {
        "error": {
            "code": 429,
            "message": message,
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }


BILLING_WORDS = "You exceeded your current quota, please check your plan and billing details."


@pytest.mark.parametrize(
    ("payload", "status", "expected", "retry_after"),
    [
        (_quota("GenerateRequestsPerMinutePerProjectPerModel", BILLING_WORDS, "38s"), 429, "retryable", 38.0),
        (_quota("GenerateContentInputTokensPerModelPerMinute", BILLING_WORDS, "1.5s"), 429, "retryable", 1.5),
        (_quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier", BILLING_WORDS, "10s"), 429, "terminal_quota", 10.0),
        (_quota("", "Quota exceeded for requests per day.", None), 429, "terminal_quota", None),
        ({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}, 503, "retryable", None),
        ({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}, 400, "terminal_client", None),
        ([{"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}], 404, "terminal_client", None),
    ],
)  # fmt: skip
def test_error_classes_and_retry_delay(
    payload: Any, status: int, expected: str, retry_after: float | None
) -> None:
    error = ADAPTER.parse_error(payload, "")
    assert classify(status, error) == expected
    assert error.retry_after == retry_after


def test_error_body_that_is_not_json() -> None:
    assert ADAPTER.parse_error(None, "upstream connect error").message == "upstream connect error"
