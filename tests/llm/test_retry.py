"""Error classes, retry-after parsing and full-jitter backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from specstress.config import RetryPolicy
from specstress.llm.protocol import ProviderError
from specstress.llm.retry import backoff_seconds, classify, retry_after_seconds

QUOTA = ProviderError(
    "You exceeded your current quota, please check your plan and billing details.",
    ("insufficient_quota", "insufficient_quota"),
)
RATE = ProviderError(
    "Rate limit reached for model-1 on tokens per min (TPM): Limit 30000, Used 29000.",
    ("rate_limit_exceeded", "requests"),
)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (408, ProviderError("timeout"), "retryable"),
        (409, ProviderError("conflict"), "retryable"),
        (425, ProviderError("too early"), "retryable"),
        (429, RATE, "retryable"),
        (500, ProviderError("boom"), "retryable"),
        (501, ProviderError("not implemented"), "retryable"),
        (502, ProviderError("bad gateway"), "retryable"),
        (503, ProviderError("unavailable"), "retryable"),
        (504, ProviderError("gateway timeout"), "retryable"),
        (520, ProviderError("unknown"), "retryable"),
        (529, ProviderError("Overloaded", ("overloaded_error",)), "retryable"),
        (429, QUOTA, "terminal_quota"),
        (403, QUOTA, "terminal_quota"),
        (429, ProviderError("Monthly spend limit reached for this key."), "terminal_quota"),
        (429, ProviderError("Rate limit reached on requests per day (RPD)."), "terminal_quota"),
        (
            429,
            ProviderError("Quota exceeded", ("RESOURCE_EXHAUSTED", "GenerateRequestsPerDay")),
            "terminal_quota",
        ),
        (402, ProviderError("Insufficient credits"), "terminal_quota"),
        (400, ProviderError("Invalid value for 'temperature'"), "terminal_client"),
        (400, QUOTA, "terminal_client"),
        (401, ProviderError("Incorrect API key provided"), "terminal_client"),
        (403, ProviderError("Project does not have access to model"), "terminal_client"),
        (404, ProviderError("The model does not exist"), "terminal_client"),
        (413, ProviderError("Request too large"), "terminal_client"),
        (422, ProviderError("Unprocessable"), "terminal_client"),
    ],
)
def test_classification(status: int, error: ProviderError, expected: str) -> None:
    assert classify(status, error) == expected


def test_retry_after_forms() -> None:
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "0.25"}) == 0.25
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    # the finer header wins when both are sent
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "whenever"}) is None


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": later}, now=now.timestamp()) == 30.0
    earlier = format_datetime(datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": earlier}, now=now.timestamp()) == 0.0


def test_backoff_stays_within_the_full_jitter_window() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=0.5, cap_seconds=8.0)
    rng = random.Random(1234)
    for retry_index in range(10):
        ceiling = min(8.0, 0.5 * 2**retry_index)
        draws = [backoff_seconds(retry_index, policy, rng, None) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in draws)
        # full jitter spreads over the whole window, not just its top
        assert min(draws) < ceiling * 0.1
        assert max(draws) > ceiling * 0.9


def test_backoff_is_reproducible_with_a_seed() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=30.0)
    first = [backoff_seconds(n, policy, random.Random(7), None) for n in range(5)]
    second = [backoff_seconds(n, policy, random.Random(7), None) for n in range(5)]
    assert first == second


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=0.1, cap_seconds=1.0)
    rng = random.Random(99)
    for retry_index in range(5):
        assert all(backoff_seconds(retry_index, policy, rng, 3.0) == 3.0 for _ in range(200))
        draws = [backoff_seconds(retry_index, policy, rng, 0.05) for _ in range(200)]
        assert all(d >= 0.05 for d in draws)
