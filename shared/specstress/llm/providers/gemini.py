"""Google Gemini API `generateContent` (`POST /v1beta/models/{model}:generateContent`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

from specstress.config import GeminiThinking, ModelConfig
from specstress.llm import protocol
from specstress.llm.errors import ErrorClass
from specstress.llm.messages import ChatMessage, Usage
from specstress.llm.structured import OutputSchema, gemini_schema

__all__ = ["GeminiGenerate", "api_root", "generate_url"]

# request fields that sit beside generationConfig rather than inside it
_TOP_LEVEL_PARAMS = frozenset({"safetySettings"})
_ROLES = {"user": "user", "assistant": "model"}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
# a google.protobuf.Duration in JSON: "38s", "0.5s", "1.200s"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
_DAILY_WORDS = ("perday", "per day", "daily")


class _Lenient(BaseModel):
    # fields are read by their camelCase wire names
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel)


class _Part(_Lenient):
    text: str | None = None
    thought: bool = False


class _Content(_Lenient):
    parts: list[_Part] = []


class _Candidate(_Lenient):
    # absent when the answer was stopped before any text (e.g. finishReason SAFETY)
    content: _Content | None = None
    finish_reason: str | None = None


class _UsageMetadata(_Lenient):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    cached_content_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0


class _PromptFeedback(_Lenient):
    block_reason: str | None = None


class _Response(_Lenient):
    candidates: list[_Candidate] = []
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None


def api_root(base_url: str) -> str:
    """`{base_url}/v1beta`; a base URL that already names an API version is taken as it is."""
    base = base_url.rstrip("/")
    return base if re.search(r"/v1(beta|alpha)?$", base) else f"{base}/v1beta"


def generate_url(base_url: str, model_id: str) -> str:
    """`{api_root}/models/{model}:generateContent`; a `models/` prefix on the id is tolerated."""
    return f"{api_root(base_url)}/models/{model_id.removeprefix('models/')}:generateContent"


def _contents(messages: Sequence[ChatMessage]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for message in messages:
        if not message.content:
            continue
        if message.role == "system":
            system.append(message.content)
            continue
        role = _ROLES[message.role]
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].append({"text": message.content})
        else:
            contents.append({"role": role, "parts": [{"text": message.content}]})
    return system, contents


def _thinking_config(thinking: GeminiThinking) -> dict[str, Any]:
    config: dict[str, Any] = {"includeThoughts": thinking.include_thoughts}
    if thinking.budget_tokens is not None:
        config["thinkingBudget"] = thinking.budget_tokens
    if thinking.level is not None:
        config["thinkingLevel"] = thinking.level.upper()
    return config


class GeminiGenerate(protocol.ProtocolAdapter):
    def url(self, model: ModelConfig) -> str:
        return generate_url(model.base_url, model.model_id)

    @staticmethod
    def api_headers(api_key: SecretStr | None) -> dict[str, str]:
        if api_key is None:
            return {}
        return {"x-goog-api-key": api_key.get_secret_value()}

    def body(
        self, model: ModelConfig, messages: Sequence[ChatMessage], schema: OutputSchema | None
    ) -> dict[str, Any]:
        system, contents = _contents(messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
        generation: dict[str, Any] = {}
        for name, value in model.params.items():
            if name in _TOP_LEVEL_PARAMS:
                body[name] = value
            else:
                generation[name] = value
        if isinstance(model.reasoning, GeminiThinking):
            generation["thinkingConfig"] = _thinking_config(model.reasoning)
        if schema is not None:
            generation["responseMimeType"] = "application/json"
            generation["responseSchema"] = gemini_schema(schema.json_schema)
        if generation:
            body["generationConfig"] = generation
        return body

    def parse_response(self, payload: Any) -> protocol.Completion:
        response = protocol.read_shape(_Response, payload, "generateContent")
        if not response.candidates:
            feedback = response.prompt_feedback or _PromptFeedback()
            reason = feedback.block_reason or "no candidates"
            raise protocol.MalformedResponseError(f"the answer holds no candidate ({reason})")
        candidate = response.candidates[0]
        parts = candidate.content.parts if candidate.content is not None else []
        thoughts = [p.text for p in parts if p.thought and p.text]
        usage = response.usage_metadata or _UsageMetadata()
        return protocol.Completion(
            text="".join(p.text or "" for p in parts if not p.thought),
            thinking="\n\n".join(thoughts) if thoughts else None,
            # promptTokenCount includes the cached part; thoughts are billed as output
            usage=Usage(
                input_tokens=usage.prompt_token_count + usage.tool_use_prompt_token_count,
                output_tokens=usage.candidates_token_count + usage.thoughts_token_count,
                cached_tokens=usage.cached_content_token_count,
                reasoning_tokens=usage.thoughts_token_count,
            ),
            finish_reason=candidate.finish_reason,
        )

    def parse_error(self, payload: Any, raw_text: str) -> protocol.ProviderError:
        # Google wraps errors in a list when the request came in a batch form
        if isinstance(payload, list) and payload:
            payload = payload[0]
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return protocol.ProviderError(message=raw_text[: protocol.MAX_ERROR_CHARS])
        status = str(error.get("status") or "")
        message = str(error.get("message") or raw_text)[: protocol.MAX_ERROR_CHARS]
        details = [d for d in error.get("details") or [] if isinstance(d, dict)]
        error_class: ErrorClass | None = None
        if status == "RESOURCE_EXHAUSTED":
            # Every Gemini quota message mentions billing, so the words decide nothing here:
            # a per-day quota waits for tomorrow, a per-minute one for a few seconds.
            error_class = "terminal_quota" if _daily(message, details) else "retryable"
        return protocol.ProviderError(
            message=message,
            codes=(status,) if status else (),
            error_class=error_class,
            retry_after=_retry_delay(details),
        )


def _daily(message: str, details: list[dict[str, Any]]) -> bool:
    words = [message]
    for detail in details:
        if detail.get("@type") == _QUOTA_FAILURE:
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict):
                    words += [
                        str(violation.get("quotaId", "")),
                        str(violation.get("quotaMetric", "")),
                    ]
    text = " ".join(words).lower()
    return any(word in text for word in _DAILY_WORDS)


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for detail in details:
        if detail.get("@type") == _RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


# --- the model list: GET /v1beta/models, paged by pageToken ---

# the most the API returns per page
MODELS_PAGE_SIZE = 1000
# only models that answer generateContent can be targets
GENERATE_METHOD = "generateContent"


class _ListedModel(_Lenient):
    name: str
    display_name: str | None = None
    supported_generation_methods: list[str] = []


class _ModelList(_Lenient):
    models: list[_ListedModel] = []
    next_page_token: str | None = None


def list_models_request(
    base_url: str, api_key: SecretStr | None, cursor: str | None = None
) -> protocol.HttpRequest:
    """One page of the listing; `cursor` is the previous page's `nextPageToken`."""
    return protocol.listing_request(
        f"{api_root(base_url)}/models",
        GeminiGenerate.api_headers(api_key),
        {"pageSize": str(MODELS_PAGE_SIZE), "pageToken": cursor},
    )


def parse_model_page(payload: Any) -> protocol.ModelPage:
    """The page's models that take generateContent, by id without the `models/` prefix (the
    listing gives no creation date)."""
    listing = protocol.read_shape(_ModelList, payload, "model list")
    return protocol.ModelPage(
        models=[
            protocol.ListedModel(
                model_id=m.name.removeprefix("models/"), display_name=m.display_name
            )
            for m in listing.models
            if GENERATE_METHOD in m.supported_generation_methods
        ],
        next_cursor=listing.next_page_token or None,
    )
