"""OpenAI-compatible chat completions (OpenAI, xAI, OpenRouter, vLLM, Ollama, Together...)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from pydantic import Field, SecretStr

from specstress.config import ModelConfig, OpenAIReasoning
from specstress.llm import protocol
from specstress.llm.messages import ChatMessage, Usage
from specstress.llm.structured import OutputSchema, strict_schema

__all__ = ["OpenAIChat"]


class _Message(protocol.LenientModel):
    content: str | None = None
    refusal: str | None = None
    # DeepSeek and vLLM name it reasoning_content; OpenRouter and Ollama name it reasoning
    reasoning_content: str | None = None
    reasoning: str | None = None


class _Choice(protocol.LenientModel):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(protocol.LenientModel):
    cached_tokens: int | None = None


class _CompletionDetails(protocol.LenientModel):
    reasoning_tokens: int | None = None


class _Usage(protocol.LenientModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None


class _ChatCompletion(protocol.LenientModel):
    choices: list[_Choice] = Field(min_length=1)
    # some local servers omit usage; the answer is still good, it just records zero tokens
    usage: _Usage | None = None


class OpenAIChat(protocol.ProtocolAdapter):
    def url(self, model: ModelConfig) -> str:
        return f"{model.base_url.rstrip('/')}/chat/completions"

    @staticmethod
    def api_headers(api_key: SecretStr | None) -> dict[str, str]:
        if api_key is None:
            return {}
        return {"Authorization": f"Bearer {api_key.get_secret_value()}"}

    def body(
        self, model: ModelConfig, messages: Sequence[ChatMessage], schema: OutputSchema | None
    ) -> dict[str, Any]:
        # The cache mark has no field here: OpenAI caches any long prefix it has seen before.
        body: dict[str, Any] = {
            **model.params,
            "model": model.model_id,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        if isinstance(model.reasoning, OpenAIReasoning):
            body["reasoning_effort"] = model.reasoning.effort
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema.name,
                    "schema": strict_schema(schema.json_schema),
                    "strict": True,
                },
            }
        return body

    def parse_response(self, payload: Any) -> protocol.Completion:
        completion = protocol.read_shape(_ChatCompletion, payload, "chat completion")
        choice = completion.choices[0]
        message = choice.message
        usage = completion.usage or _Usage()
        prompt_details = usage.prompt_tokens_details or _PromptDetails()
        completion_details = usage.completion_tokens_details or _CompletionDetails()
        return protocol.Completion(
            # a refusal under structured outputs comes instead of content; it is the answer
            text=message.content if message.content is not None else message.refusal or "",
            thinking=message.reasoning_content or message.reasoning,
            usage=Usage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cached_tokens=prompt_details.cached_tokens or 0,
                reasoning_tokens=completion_details.reasoning_tokens or 0,
            ),
            finish_reason=choice.finish_reason,
        )

    def parse_error(self, payload: Any, raw_text: str) -> protocol.ProviderError:
        # OpenAI nests {"error": {...}}; vLLM and others put message/type/code at the top level
        error = payload.get("error", payload) if isinstance(payload, dict) else None
        if isinstance(error, str):
            return protocol.ProviderError(message=error[: protocol.MAX_ERROR_CHARS])
        if not isinstance(error, dict):
            return protocol.ProviderError(message=raw_text[: protocol.MAX_ERROR_CHARS])
        codes = tuple(str(error[field]) for field in ("code", "type", "status") if error.get(field))
        message = error.get("message") or error.get("detail") or raw_text
        return protocol.ProviderError(message=str(message)[: protocol.MAX_ERROR_CHARS], codes=codes)


# --- the model list: GET {base_url}/models (one page: the API does not paginate it) ---


class _ListedModel(protocol.LenientModel):
    id: str = Field(min_length=1)
    created: float | None = None
    # OpenAI announces a model's end this way; compatible servers may say `deprecated`
    shutdown_date: str | None = None
    deprecated: bool = False


class _ModelList(protocol.LenientModel):
    data: list[_ListedModel]


def list_models_request(
    base_url: str, api_key: SecretStr | None, cursor: str | None = None
) -> protocol.HttpRequest:
    """The listing request; `cursor` is unused (the list comes whole) but kept for the shape
    every protocol's listing shares."""
    return protocol.listing_request(
        f"{base_url.rstrip('/')}/models", OpenAIChat.api_headers(api_key), {}
    )


def parse_model_page(payload: Any, today: date | None = None) -> protocol.ModelPage:
    listing = protocol.read_shape(_ModelList, payload, "model list")
    today = today or datetime.now(UTC).date()
    return protocol.ModelPage(
        models=[
            protocol.ListedModel(
                model_id=m.id,
                created=m.created,
                deprecated=m.deprecated or _shut_down(m.shutdown_date, today),
            )
            for m in listing.data
        ],
        next_cursor=None,
    )


def _shut_down(shutdown_date: str | None, today: date) -> bool:
    if not shutdown_date:
        return False
    try:
        return date.fromisoformat(shutdown_date[:10]) <= today
    except ValueError:
        return False
