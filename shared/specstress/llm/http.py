"""The HTTP exchange every provider call shares: timeouts, transport failures, error replies.

The chat gateway, the embedding client and the batch APIs all speak to providers through these
helpers, so a timeout, a reset connection or an error body is classed the same way everywhere
and an echoed API key never travels on in an error message.

Model calls, one per paid answer, go through `post_json` on an aiohttp session of their own:
httpx on top of the same aiohttp transport cost about two thirds of an exchange's CPU (URL
parsing, request and response models, cookie handling). Everything else keeps httpx.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from pydantic import SecretStr

from specstress.config import Timeouts
from specstress.llm.errors import LLMError
from specstress.llm.protocol import ProviderError
from specstress.llm.redact import MASK
from specstress.llm.retry import classify, retry_after_seconds

__all__ = [
    "Reply",
    "json_body",
    "open_session",
    "post_json",
    "reply_error",
    "request_timeout",
    "scrub",
    "send",
]

# how long an idle connection is kept: httpx's default, which the httpx transport passed on
_KEEPALIVE_SECONDS = 5.0


class Answered(Protocol):
    """What the error helpers read of an answer: an httpx.Response or a `Reply`."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


@dataclass(frozen=True)
class Reply:
    """A provider's answer to `post_json`, its body read whole."""

    status_code: int
    # case-insensitive, as httpx's are
    headers: Mapping[str, str]
    content: bytes
    charset: str | None = None

    @property
    def text(self) -> str:
        return self.content.decode(self.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


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


def open_session(max_connections: int, user_agent: str) -> aiohttp.ClientSession:
    """The session of `post_json`: pooled as the httpx transport pools (same limit, keep-alive
    and certificates). No proxy from the environment, as before (httpx reads none for a client
    with its own transport); aiohttp would look for one, and for a .netrc, in a thread on
    every request."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        keepalive_timeout=_KEEPALIVE_SECONDS,
        ssl=httpx.create_ssl_context(),
    )
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": user_agent})


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    headers: Mapping[str, str],
    timeout: Timeouts,
    api_key: SecretStr | None,
) -> Reply:
    """POST `body` as JSON and read the answer; a timeout or a failed connection becomes a
    retryable LLMError, as in `send`."""
    # the bytes httpx would send for json=body
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    limits = request_timeout(timeout)
    try:
        async with session.post(
            url,
            data=data,
            headers={**headers, "Content-Type": "application/json"},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(
                sock_connect=limits.connect, sock_read=limits.read, connect=limits.pool
            ),
        ) as response:
            content = await response.read()
            return Reply(response.status, response.headers, content, response.charset)
    except TimeoutError as exc:
        # aiohttp's connect and read timeouts are TimeoutErrors too
        raise LLMError("retryable", f"no answer in time ({type(exc).__name__})") from None
    except aiohttp.ClientError as exc:
        message = scrub(f"connection failed: {type(exc).__name__}: {exc}", api_key)
        raise LLMError("retryable", message) from None


def json_body(response: Answered) -> Any:
    """The parsed body, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def reply_error(response: Answered, error: ProviderError, api_key: SecretStr | None) -> LLMError:
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
