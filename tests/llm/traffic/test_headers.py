"""Reading providers' rate-limit headers, and what a call is estimated to cost in tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from specstress.config import ModelConfig
from specstress.llm.messages import ChatMessage
from specstress.llm.traffic.headers import Room, parse_duration, parse_instant, parse_room
from specstress.llm.traffic.limits import estimate_tokens, limit_key
from tests.support.models import model_config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1.5s", 1.5),
        ("120ms", 0.12),
        ("1h2m3.5s", 3723.5),
        ("17ms", 0.017),
        ("250us", 0.00025),
        ("2", 2.0),
        ("0.75", 0.75),
        ("", None),
        ("soon", None),
        ("6m0", None),
        ("1.5s2", None),
    ],
)
def test_durations(text: str, seconds: float | None) -> None:
    parsed = parse_duration(text)
    if seconds is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(seconds)


def test_instants_are_seconds_from_now() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert parse_instant("2026-01-02T03:04:35Z", now) == 30.0
    assert parse_instant("2026-01-02T03:05:05+00:00", now) == 60.0
    assert parse_instant("2026-01-02T03:00:00Z", now) == 0.0  # already past
    assert parse_instant("2026-01-02T03:04:35", now) is None  # no zone: ambiguous
    assert parse_instant("tomorrow", now) is None


@pytest.mark.parametrize(
    ("headers", "requests", "tokens"),
    [
        pytest.param(
            {
                "X-RateLimit-Limit-Requests": "60",
                "x-ratelimit-remaining-requests": "59",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-limit-tokens": "150000",
                "x-ratelimit-remaining-tokens": "149984",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            Room(limit=60, remaining=59, reset_seconds=1.0),
            Room(limit=150000, remaining=149984, reset_seconds=360.0),
            id="openai",
        ),
        pytest.param(
            {
                "anthropic-ratelimit-requests-limit": "4000",
                "anthropic-ratelimit-requests-remaining": "3999",
                "anthropic-ratelimit-requests-reset": "2026-01-02T03:04:06Z",
                "anthropic-ratelimit-tokens-limit": "80000",
                "anthropic-ratelimit-tokens-remaining": "1000",
                "anthropic-ratelimit-tokens-reset": "2026-01-02T03:04:45Z",
                "anthropic-ratelimit-input-tokens-limit": "400000",
                "anthropic-ratelimit-input-tokens-remaining": "399000",
            },
            Room(limit=4000, remaining=3999, reset_seconds=1.0),
            Room(limit=80000, remaining=1000, reset_seconds=40.0),
            id="anthropic-prefers-the-combined-token-family",
        ),
    ],
)
def test_provider_headers_give_request_and_token_room(
    headers: dict[str, str], requests: Room, tokens: Room
) -> None:
    # Anthropic's resets are instants: read them as of a fixed now
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    room = parse_room(httpx.Headers(headers), now=now)
    assert room.requests == requests
    assert room.tokens == tokens


def test_anthropic_split_token_limits_take_the_one_closer_to_running_out() -> None:
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-input-tokens-limit": "400000",
            "anthropic-ratelimit-input-tokens-remaining": "300000",
            "anthropic-ratelimit-output-tokens-limit": "80000",
            "anthropic-ratelimit-output-tokens-remaining": "8000",
        }
    )
    assert parse_room(headers).tokens == Room(limit=80000, remaining=8000)


def test_no_headers_and_garbage_mean_nothing_known() -> None:
    assert parse_room(httpx.Headers({})).empty
    garbage = httpx.Headers({"x-ratelimit-limit-requests": "lots", "x-ratelimit-reset-tokens": "?"})
    assert parse_room(garbage).empty


def _model(**changes: Any) -> ModelConfig:
    return model_config(**changes)


def test_token_estimate_is_prompt_quarter_plus_the_most_the_answer_may_take() -> None:
    messages = [ChatMessage(role="system", content="x" * 10), ChatMessage(role="user", content="y")]
    assert estimate_tokens(_model(params={"max_tokens": 50}), messages) == 3 + 50
    assert estimate_tokens(_model(params={"max_completion_tokens": 70}), messages) == 73
    assert estimate_tokens(_model(params={}), messages) == 3 + 1024
    assert estimate_tokens(_model(limits={"assumed_output_tokens": 10}), messages) == 13


def test_a_limit_is_one_per_endpoint_model_and_key() -> None:
    base = limit_key(_model())
    assert limit_key(_model(key="other-key-name", base_url="https://api.example.test/v1/")) == base
    assert limit_key(_model(model_id="model-2")) != base
    assert limit_key(_model(api_key_env="OTHER_KEY")) != base
