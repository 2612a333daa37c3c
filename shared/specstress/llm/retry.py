"""Which failures are worth another try, and how long to wait before it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from specstress.config import RetryPolicy
from specstress.llm.errors import ErrorClass, LLMError
from specstress.llm.protocol import ProviderError

__all__ = [
    "RETRYABLE_STATUSES",
    "backoff_seconds",
    "classify",
    "retry_after_seconds",
    "wait_to_retry",
]

log = logging.getLogger(__name__)

# 409 and 425 are transient conflicts; 529 is Anthropic's "overloaded"
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# Out of money or out of daily quota: retrying cannot help, and keeps failing until a person acts.
_QUOTA_MARKERS = (
    "insufficient_quota",
    "billing",
    "spend limit",
    "spending limit",
    "spend_limit",
    "credit",
    "daily",
    "per day",
    "perday",
)


def classify(status: int, error: ProviderError) -> ErrorClass:
    """The error class of a non-success HTTP status."""
    if error.error_class is not None:
        return error.error_class
    # 402 Payment Required is how OpenRouter reports exhausted credits
    if status == 402 or (status in (403, 429) and _says_quota(error)):
        return "terminal_quota"
    if status in RETRYABLE_STATUSES or status >= 500:
        return "retryable"
    return "terminal_client"


def _says_quota(error: ProviderError) -> bool:
    words = " ".join((*error.codes, error.message)).lower()
    return any(marker in words for marker in _QUOTA_MARKERS)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a provider asks for: `retry-after-ms`, else `retry-after` (seconds or a date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_seconds(
    retry_index: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None
) -> float:
    """Full jitter U(0, min(cap, base * 2**n)), never shorter than the provider's retry-after."""
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2**retry_index)
    return max(rng.uniform(0, ceiling), retry_after or 0.0)


async def wait_to_retry(
    call: str, attempt: int, policy: RetryPolicy, rng: random.Random, error: LLMError
) -> None:
    """Log that `attempt` of `call` failed with a retryable error, then sleep the backoff before
    the next one."""
    delay = backoff_seconds(attempt - 1, policy, rng, error.retry_after)
    log.warning(
        "%s attempt %d of %d failed (HTTP %s): %s; retrying in %.2f s",
        call,
        attempt,
        policy.max_attempts,
        error.http_status,
        error,
        delay,
    )
    await asyncio.sleep(delay)
