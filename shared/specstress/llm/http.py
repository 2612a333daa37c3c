"""The HTTP exchange every provider call shares: timeouts, transport failures, error replies.

The chat gateway, the embedding client and the batch APIs all speak to providers through these
helpers, so a timeout, a reset connection or an error body is classed the same way everywhere
and an echoed API key never travels on in an error message.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from pydantic import SecretStr

from specstress.config import Timeouts
from specstress.llm.errors import LLMError
from specstress.llm.protocol import ProviderError
from specstress.llm.redact import MASK
from specstress.llm.retry import classify, retry_after_seconds

__all__ = ["json_body", "reply_error", "request_timeout", "scrub", "send"]


def request_timeout(seconds: Timeouts) -> httpx.Timeout:
    # aiohttp spends the pool budget on waiting for a connection AND connecting, so it must not
    # be shorter than the connect timeout; write stalls count as read stalls.
    return httpx.Timeout(
        connect=seconds.connect_seconds,
        read=seconds.read_seconds,
        write=seconds.read_seconds,
        pool=seconds.connect_seconds + seconds.read_seconds,
    )


def scrub(text: str, api_key: SecretStr | None) -> str:
    """Providers sometimes echo the key they were sent; it must not travel on in our errors."""
    if api_key is None or not api_key.get_secret_value():
        return text
    return text.replace(api_key.get_secret_value(), MASK)


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: httpx.Timeout,
    api_key: SecretStr | None,
    what: str = "",
    **kwargs: Any,
) -> httpx.Response:
    """One request; a timeout or a failed connection becomes a retryable LLMError."""
    prefix = f"{what}: " if what else ""
    try:
        return await http.request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException as exc:
        raise LLMError("retryable", f"{prefix}no answer in time ({type(exc).__name__})") from None
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        # aiohttp errors the transport does not translate arrive unwrapped
        message = scrub(f"{prefix}connection failed: {type(exc).__name__}: {exc}", api_key)
        raise LLMError("retryable", message) from None


def json_body(response: httpx.Response) -> Any:
    """The parsed body, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def reply_error(
    response: httpx.Response, error: ProviderError, api_key: SecretStr | None
) -> LLMError:
    """The LLMError for a provider's error reply; the longest wait it asked for is kept."""
    status = response.status_code
    error_class = classify(status, error)
    retry_after = None
    if error_class == "retryable":
        waits = [
            w for w in (retry_after_seconds(response.headers), error.retry_after) if w is not None
        ]
        retry_after = max(waits) if waits else None
    return LLMError(
        error_class,
        scrub(error.message, api_key) or f"HTTP {status}",
        http_status=status,
        retry_after=retry_after,
    )
