"""The simulator's Gemini API: `POST /v1beta/models/{model}:generateContent`.

Answers with the generateContent shape: a `thought: true` part first when thoughts are asked
for, JSON text when `responseMimeType` is application/json (fitted to `responseSchema` or
`responseJsonSchema`), and usage with implicit prefix caching and thought tokens.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.llm_sim.answers import Message, answer
from services.llm_sim.app_state import PREFIX_CACHE_KEY, simulate_latency
from services.llm_sim.personas import PERSONAS
from services.llm_sim.prefix_cache import Segment, tokens
from services.llm_sim.shaping import json_answer, thinking_text

ROUTE = "/v1beta/models/{model}:generateContent"
_ROLES = {"user": "user", "model": "assistant"}
_HTTP_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}


class _Invalid(Exception):
    pass


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": _HTTP_STATUS[status]}}
    return web.json_response(body, status=status)


def _field(node: dict[str, Any], camel: str, snake: str) -> Any:
    """The API takes both spellings of a field name, as protobuf JSON does."""
    return node.get(camel, node.get(snake))


@dataclass(frozen=True)
class _Request:
    segments: list[Segment]
    messages: list[Message]
    thinks: bool
    include_thoughts: bool
    json_output: bool
    schema: dict[str, Any] | None


def _texts(content: object, where: str) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _Invalid(f"{where}.parts must be a non-empty list")
    texts = []
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            raise _Invalid(f"{where}.parts[{index}] must be an object")
        text = part.get("text")
        if text is not None and not isinstance(text, str):
            raise _Invalid(f"{where}.parts[{index}].text must be a string")
        if text:
            texts.append(text)
    return texts


def _parse(body: dict[str, Any]) -> _Request:
    segments: list[Segment] = []
    messages: list[Message] = []
    system = _field(body, "systemInstruction", "system_instruction")
    if system is not None:
        texts = _texts(system, "systemInstruction")
        segments += [Segment("system", t) for t in texts]
        messages.append(Message("system", "\n".join(texts)))
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _Invalid("contents is not specified")
    for index, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in _ROLES:
            raise _Invalid(f"contents[{index}].role must be 'user' or 'model'")
        texts = _texts(content, f"contents[{index}]")
        segments += [Segment(role, t) for t in texts]
        messages.append(Message(_ROLES[role], "\n".join(texts)))
    config = _field(body, "generationConfig", "generation_config") or {}
    if not isinstance(config, dict):
        raise _Invalid("generationConfig must be an object")
    thinking = _field(config, "thinkingConfig", "thinking_config") or {}
    if not isinstance(thinking, dict):
        raise _Invalid("generationConfig.thinkingConfig must be an object")
    budget = _field(thinking, "thinkingBudget", "thinking_budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise _Invalid("thinkingConfig.thinkingBudget must be an integer")
    level = _field(thinking, "thinkingLevel", "thinking_level")
    if budget is not None and level is not None:
        raise _Invalid("thinkingConfig: set thinkingBudget or thinkingLevel, not both")
    mime = _field(config, "responseMimeType", "response_mime_type") or "text/plain"
    schema = _field(config, "responseSchema", "response_schema") or _field(
        config, "responseJsonSchema", "response_json_schema"
    )
    if schema is not None and mime != "application/json":
        raise _Invalid("responseSchema needs responseMimeType application/json")
    if schema is not None and not isinstance(schema, dict):
        raise _Invalid("responseSchema must be an object")
    return _Request(
        segments=segments,
        messages=messages,
        # asked to think unless the budget turns it off
        thinks=bool(thinking) and budget != 0,
        include_thoughts=bool(_field(thinking, "includeThoughts", "include_thoughts")),
        json_output=mime == "application/json",
        schema=schema,
    )


async def generate_content(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    try:
        body = json.loads(await request.text())
        if not isinstance(body, dict):
            raise _Invalid("the request body must be a JSON object")
        parsed = _parse(body)
    except ValueError as exc:
        return _error(400, f"Invalid JSON payload received. {exc}")
    except _Invalid as exc:
        return _error(400, str(exc))
    if model not in PERSONAS:
        return _error(
            404,
            f"models/{model} is not found for API version v1beta, or is not supported for "
            "generateContent.",
        )
    await simulate_latency(request)

    content = answer(model, parsed.messages)
    if parsed.json_output:
        content = json.dumps(json_answer(content, parsed.schema))
    parts: list[dict[str, Any]] = []
    thought_tokens = 0
    if parsed.thinks:
        thought = thinking_text(model, parsed.messages)
        thought_tokens = tokens(len(thought))
        if parsed.include_thoughts:
            parts.append({"text": thought, "thought": True})
    parts.append({"text": content})
    cache = request.app[PREFIX_CACHE_KEY].automatic(f"gemini/{model}", parsed.segments)
    usage: dict[str, Any] = {
        "promptTokenCount": cache.prompt_tokens,
        "candidatesTokenCount": tokens(len(content)),
        "totalTokenCount": cache.prompt_tokens + tokens(len(content)) + thought_tokens,
    }
    if cache.cached_tokens:
        usage["cachedContentTokenCount"] = cache.cached_tokens
    if thought_tokens:
        usage["thoughtsTokenCount"] = thought_tokens
    return web.json_response(
        {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": uuid.uuid4().hex,
        }
    )
