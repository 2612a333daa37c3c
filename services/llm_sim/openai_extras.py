"""What the simulator's OpenAI chat completions add to a plain answer: JSON for
`response_format`, reasoning tokens for `reasoning_effort`, and cached prompt tokens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.llm_sim.answers import Message
from services.llm_sim.prefix_cache import PrefixCache, Segment, tokens
from services.llm_sim.shaping import json_answer, thinking_text

REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_FORMAT_TYPES = ("text", "json_object", "json_schema")


def option_problem(body: dict[str, Any]) -> tuple[str, str] | None:
    """(message, param) for a malformed `response_format` or `reasoning_effort`, else None."""
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        return f"`reasoning_effort` must be one of {', '.join(REASONING_EFFORTS)}.", (
            "reasoning_effort"
        )
    response_format = body.get("response_format")
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or response_format.get("type") not in _FORMAT_TYPES:
        return "`response_format.type` must be text, json_object or json_schema.", (
            "response_format"
        )
    if response_format["type"] == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return "`response_format.json_schema.name` is required.", "response_format"
        if not isinstance(spec.get("schema", {}), dict):
            return "`response_format.json_schema.schema` must be an object.", "response_format"
    return None


def completion(
    cache: PrefixCache, model: str, messages: Sequence[Message], content: str, body: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The message content and the usage object for an answer whose plain text is `content`."""
    response_format = body.get("response_format") or {"type": "text"}
    if response_format["type"] == "json_object":
        content = json.dumps(json_answer(content, None))
    elif response_format["type"] == "json_schema":
        schema = response_format["json_schema"].get("schema")
        content = json.dumps(json_answer(content, schema))
    effort = body.get("reasoning_effort")
    reasoning = 0
    if effort is not None and effort != "none":
        # OpenAI bills the reasoning but never shows it; only its size is reported
        reasoning = tokens(len(thinking_text(model, messages)))
    use = cache.automatic(f"openai/{model}", [Segment(m.role, m.content) for m in messages])
    completion_tokens = tokens(len(content)) + reasoning
    usage = {
        "prompt_tokens": use.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": use.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": use.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    return content, usage
