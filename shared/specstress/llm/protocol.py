"""What a wire-protocol adapter does: build the HTTP request, read the answer or the error.

The gateway owns everything else (cache, locks, retries, limits, ledger, metrics), so adding a
protocol means adding one adapter module and registering it in the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from specstress.config import ModelConfig
from specstress.llm.errors import ErrorClass
from specstress.llm.messages import ChatMessage, Usage
from specstress.llm.structured import OutputSchema

__all__ = [
    "Completion",
    "HttpRequest",
    "MalformedResponseError",
    "ProtocolAdapter",
    "ProviderError",
]


@dataclass(frozen=True)
class HttpRequest:
    url: str
    # may hold the API key: pass to the HTTP client only, never log or store
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Completion:
    text: str
    thinking: str | None
    usage: Usage
    finish_reason: str | None


@dataclass(frozen=True)
class ProviderError:
    """An error body reduced to what classification needs."""

    message: str
    # the provider's machine-readable code/type/status words, e.g. "insufficient_quota"
    codes: tuple[str, ...] = ()
    # set when the body alone settles the class (a Gemini per-day quota, an Anthropic credit
    # balance); None leaves it to the HTTP status and the words above
    error_class: ErrorClass | None = None
    # a wait the provider put in the body (Gemini's RetryInfo.retryDelay), in seconds
    retry_after: float | None = None


@dataclass(frozen=True)
class ListedModel:
    """One model of a provider's model list, as far as the listing tells."""

    model_id: str
    display_name: str | None = None
    # seconds since the epoch; None when the listing gives no date
    created: float | None = None
    # the provider marks it as going away (e.g. a shutdown date that has passed)
    deprecated: bool = False


@dataclass(frozen=True)
class ModelPage:
    models: list[ListedModel]
    # what to ask for the next page; None on the last page
    next_cursor: str | None


class MalformedResponseError(ValueError):
    """A success status whose body is not the shape the protocol promises."""


class ProtocolAdapter(Protocol):
    def build_request(
        self,
        model: ModelConfig,
        messages: Sequence[ChatMessage],
        schema: OutputSchema | None,
        api_key: SecretStr | None,
    ) -> HttpRequest:
        """`schema`, when given, is asked for with the protocol's native structured output."""
        ...

    def parse_response(self, payload: Any) -> Completion:
        """Raises MalformedResponseError when `payload` is not a usable answer."""
        ...

    def parse_error(self, payload: Any, raw_text: str) -> ProviderError:
        """`payload` is the decoded JSON body, or None when the body was not JSON."""
        ...
