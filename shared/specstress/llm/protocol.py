"""What a wire-protocol adapter does: build the HTTP request, read the answer or the error.

The gateway owns everything else (cache, locks, retries, limits, ledger, metrics), so adding a
protocol means adding one adapter module and registering it in the gateway.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from specstress.config import ModelConfig
from specstress.llm.errors import ErrorClass
from specstress.llm.messages import ChatMessage, Usage
from specstress.llm.structured import OutputSchema

__all__ = [
    "MAX_ERROR_CHARS",
    "Completion",
    "HttpRequest",
    "LenientModel",
    "MalformedResponseError",
    "ProtocolAdapter",
    "ProviderError",
    "listing_request",
    "read_shape",
]

# how much of a provider's error text is kept
MAX_ERROR_CHARS = 500
Shape = TypeVar("Shape", bound=BaseModel)


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


class LenientModel(BaseModel):
    """What a provider's answer is read into: servers add fields of their own, so only the
    fields read here must be right."""

    model_config = ConfigDict(extra="ignore")


def read_shape(shape: type[Shape], payload: Any, what: str) -> Shape:
    """`payload` read as `shape`, or MalformedResponseError naming `what`."""
    try:
        return shape.model_validate(payload)
    except ValidationError as exc:
        detail = str(exc)
        # a success status can carry an error object (OpenRouter does this): its message says
        # more than a list of missing fields
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            detail = str(payload["error"].get("message", detail))
        raise MalformedResponseError(
            f"unexpected {what} shape: {detail[:MAX_ERROR_CHARS]}"
        ) from None


def listing_request(url: str, headers: dict[str, str], query: dict[str, str | None]) -> HttpRequest:
    """A GET of one page of a model listing; a parameter that is None (no cursor on the first
    page) is left out."""
    params = {name: value for name, value in query.items() if value is not None}
    return HttpRequest(
        url=f"{url}?{urlencode(params)}" if params else url, headers=headers, body={}
    )


class ProtocolAdapter(ABC):
    """Every call is a JSON POST of the protocol's body to its URL, signed with its headers."""

    def build_request(
        self,
        model: ModelConfig,
        messages: Sequence[ChatMessage],
        schema: OutputSchema | None,
        api_key: SecretStr | None,
    ) -> HttpRequest:
        """`schema`, when given, is asked for with the protocol's native structured output."""
        return HttpRequest(
            url=self.url(model),
            headers={"Content-Type": "application/json", **self.api_headers(api_key)},
            body=self.body(model, messages, schema),
        )

    @abstractmethod
    def url(self, model: ModelConfig) -> str: ...

    @staticmethod
    @abstractmethod
    def api_headers(api_key: SecretStr | None) -> dict[str, str]:
        """What every request of the protocol carries: the key (when there is one) and any
        version header; the model listing and the batch API send them too."""

    @abstractmethod
    def body(
        self, model: ModelConfig, messages: Sequence[ChatMessage], schema: OutputSchema | None
    ) -> dict[str, Any]: ...

    @abstractmethod
    def parse_response(self, payload: Any) -> Completion:
        """Raises MalformedResponseError when `payload` is not a usable answer."""

    @abstractmethod
    def parse_error(self, payload: Any, raw_text: str) -> ProviderError:
        """`payload` is the decoded JSON body, or None when the body was not JSON."""
