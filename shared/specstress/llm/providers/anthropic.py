"""Anthropic Messages API (`POST /v1/messages`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from specstress.config import AnthropicThinking, ModelConfig
from specstress.llm import protocol
from specstress.llm.errors import ErrorClass
from specstress.llm.messages import ChatMessage, Usage
from specstress.llm.structured import OutputSchema

__all__ = [
    "ANTHROPIC_VERSION",
    "MAX_CACHE_BREAKPOINTS",
    "AnthropicMessages",
    "messages_url",
]

ANTHROPIC_VERSION = "2023-06-01"
# the API rejects a request with more cache breakpoints than this
MAX_CACHE_BREAKPOINTS = 4
_TOOL_DESCRIPTION = "Record the answer, with every field filled in as the instructions ask."
# error types whose class does not depend on the message text
_RETRYABLE_TYPES = frozenset({"rate_limit_error", "overloaded_error", "api_error", "timeout_error"})


class _Block(protocol.LenientModel):
    type: str
    text: str | None = None
    thinking: str | None = None
    name: str | None = None
    input: Any = None


class _OutputDetails(protocol.LenientModel):
    thinking_tokens: int | None = None


class _Usage(protocol.LenientModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None


class _Message(protocol.LenientModel):
    content: list[_Block]
    stop_reason: str | None = None
    usage: _Usage | None = None


def _api_root(base_url: str) -> str:
    """`{base_url}/v1`; a base URL that already ends in /v1 is taken as it is."""
    base = base_url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def messages_url(base_url: str) -> str:
    return f"{_api_root(base_url)}/messages"


def _blocks(messages: Sequence[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks and alternating turns; consecutive messages of one role share a turn."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    marked: list[dict[str, Any]] = []
    for message in messages:
        if not message.content:
            continue  # the API rejects empty text blocks
        block: dict[str, Any] = {"type": "text", "text": message.content}
        if message.cache:
            marked.append(block)
        if message.role == "system":
            system.append(block)
        elif turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": message.role, "content": [block]})
    # The latest breakpoints cover the longest prefixes, so those are the ones worth keeping.
    for block in marked[-MAX_CACHE_BREAKPOINTS:]:
        block["cache_control"] = {"type": "ephemeral"}
    return system, turns


class AnthropicMessages(protocol.ProtocolAdapter):
    def url(self, model: ModelConfig) -> str:
        return messages_url(model.base_url)

    @staticmethod
    def api_headers(api_key: SecretStr | None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key is not None:
            headers["x-api-key"] = api_key.get_secret_value()
        return headers

    def body(
        self, model: ModelConfig, messages: Sequence[ChatMessage], schema: OutputSchema | None
    ) -> dict[str, Any]:
        system, turns = _blocks(messages)
        body: dict[str, Any] = {
            **model.params,
            "model": model.model_id,
            "max_tokens": model.max_output_tokens(),
            "messages": turns,
        }
        if system:
            body["system"] = system
        thinking = model.reasoning if isinstance(model.reasoning, AnthropicThinking) else None
        if thinking is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": thinking.budget_tokens}
        if schema is not None:
            body["tools"] = [
                {
                    "name": schema.name,
                    "description": _TOOL_DESCRIPTION,
                    "input_schema": schema.json_schema,
                }
            ]
            # Extended thinking refuses a forced tool; the model is then offered the tool and
            # an answer in plain text is validated like any other.
            body["tool_choice"] = (
                {"type": "auto"} if thinking is not None else {"type": "tool", "name": schema.name}
            )
        return body

    def parse_response(self, payload: Any) -> protocol.Completion:
        message = protocol.read_shape(_Message, payload, "Messages API")
        tool_inputs = [b.input for b in message.content if b.type == "tool_use"]
        if tool_inputs:
            text = json.dumps(tool_inputs[0], ensure_ascii=False)
        else:
            text = "".join(b.text or "" for b in message.content if b.type == "text")
        thoughts = [b.thinking for b in message.content if b.type == "thinking" and b.thinking]
        usage = message.usage or _Usage()
        read = usage.cache_read_input_tokens or 0
        written = usage.cache_creation_input_tokens or 0
        details = usage.output_tokens_details or _OutputDetails()
        return protocol.Completion(
            text=text,
            thinking="\n\n".join(thoughts) if thoughts else None,
            # Anthropic's input_tokens leaves out what was read from or written to the cache
            usage=Usage(
                input_tokens=usage.input_tokens + read + written,
                output_tokens=usage.output_tokens,
                cached_tokens=read,
                cache_write_tokens=written,
                reasoning_tokens=details.thinking_tokens or 0,
            ),
            finish_reason=message.stop_reason,
        )

    def parse_error(self, payload: Any, raw_text: str) -> protocol.ProviderError:
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return protocol.ProviderError(message=raw_text[: protocol.MAX_ERROR_CHARS])
        kind = str(error.get("type") or "")
        message = str(error.get("message") or raw_text)[: protocol.MAX_ERROR_CHARS]
        error_class: ErrorClass | None = None
        if kind == "billing_error" or "credit balance" in message.lower():
            error_class = "terminal_quota"
        elif kind in _RETRYABLE_TYPES:
            error_class = "retryable"
        return protocol.ProviderError(
            message=message, codes=(kind,) if kind else (), error_class=error_class
        )


# --- the model list: GET /v1/models, newest first, paged by after_id ---

# the most the API returns per page
MODELS_PAGE_LIMIT = 1000


class _ListedModel(protocol.LenientModel):
    id: str
    display_name: str | None = None
    created_at: datetime | None = None


class _ModelList(protocol.LenientModel):
    data: list[_ListedModel]
    has_more: bool = False
    last_id: str | None = None


def list_models_request(
    base_url: str, api_key: SecretStr | None, cursor: str | None = None
) -> protocol.HttpRequest:
    """One page of the listing; `cursor` is the previous page's `last_id`."""
    return protocol.listing_request(
        f"{_api_root(base_url)}/models",
        AnthropicMessages.api_headers(api_key),
        {"limit": str(MODELS_PAGE_LIMIT), "after_id": cursor},
    )


def parse_model_page(payload: Any) -> protocol.ModelPage:
    listing = protocol.read_shape(_ModelList, payload, "model list")
    models = [
        protocol.ListedModel(
            model_id=m.id,
            display_name=m.display_name,
            created=None if m.created_at is None else m.created_at.timestamp(),
        )
        for m in listing.data
    ]
    # the last id of the page is where the next starts; a page claiming more but naming no
    # cursor ends the listing rather than asking for the same page again
    last = listing.last_id or (listing.data[-1].id if listing.data else None)
    return protocol.ModelPage(models=models, next_cursor=last if listing.has_more else None)
