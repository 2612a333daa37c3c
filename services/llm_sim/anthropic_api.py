"""The simulator's Anthropic Messages API: `POST /v1/messages`.

Checks requests the way the real API does where a client could get it wrong (the version
header, a required `max_tokens`, thinking budgets, forced tools with thinking) and answers with
the Messages shape: thinking blocks with a signature when thinking is on, a `tool_use` block
when a tool is offered, cache reads and writes at `cache_control` breakpoints.
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
from services.llm_sim.shaping import json_answer, thinking_signature, thinking_text

MIN_THINKING_BUDGET = 1024


class _Invalid(Exception):
    pass


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": f"req_sim_{uuid.uuid4().hex[:24]}",
    }
    return web.json_response(body, status=status)


@dataclass(frozen=True)
class _Request:
    model: str
    max_tokens: int
    segments: list[Segment]
    messages: list[Message]
    thinking_budget: int | None
    tool: dict[str, Any] | None
    output_schema: dict[str, Any] | None


def _blocks(content: object, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _Invalid(f"{where}: content must be a string or a list of blocks")
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _Invalid(f"{where}.content.{index}: a block needs a string `type`")
        if block["type"] == "text" and not (isinstance(block.get("text"), str) and block["text"]):
            raise _Invalid(f"{where}.content.{index}: text content blocks must be non-empty")
    return content


def _segments(role: str, blocks: list[dict[str, Any]]) -> tuple[list[Segment], str]:
    segments = [
        Segment(role, b["text"], breakpoint=isinstance(b.get("cache_control"), dict))
        for b in blocks
        if b["type"] == "text"
    ]
    return segments, "\n".join(s.text for s in segments)


def _thinking(body: dict[str, Any], max_tokens: int) -> int | None:
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in (
        "enabled",
        "disabled",
        "adaptive",
    ):
        raise _Invalid("thinking: type must be enabled, disabled or adaptive")
    if thinking["type"] == "disabled":
        return None
    if thinking["type"] == "adaptive":
        return max_tokens - 1
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise _Invalid("thinking.budget_tokens: Field required")
    if budget < MIN_THINKING_BUDGET:
        raise _Invalid(f"thinking.budget_tokens: Input should be >= {MIN_THINKING_BUDGET}")
    if budget >= max_tokens:
        raise _Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    return budget


def _tool(body: dict[str, Any], thinking: bool) -> dict[str, Any] | None:
    """The tool the answer goes through: the forced one, else the first offered."""
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list) or not all(
        isinstance(t, dict)
        and isinstance(t.get("name"), str)
        and isinstance(t.get("input_schema"), dict)
        for t in tools
    ):
        raise _Invalid("tools: each tool needs a `name` and an `input_schema` object")
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise _Invalid("tool_choice: type must be auto, any, tool or none")
    if thinking and kind in ("any", "tool"):
        raise _Invalid(
            "Thinking may not be enabled when tool_choice forces tool use "
            "(use tool_choice auto or none)."
        )
    if kind == "none" or not tools:
        return None
    if kind == "tool":
        named = [t for t in tools if t["name"] == choice.get("name")]
        if not named:
            raise _Invalid(f"tool_choice: no tool named {choice.get('name')!r}")
        forced: dict[str, Any] = named[0]
        return forced
    first: dict[str, Any] = tools[0]
    return first


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    if config is None:
        return None
    output_format = config.get("format") if isinstance(config, dict) else None
    if output_format is None:
        return None
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        raise _Invalid("output_config.format: type must be json_schema")
    schema = output_format.get("schema")
    if not isinstance(schema, dict):
        raise _Invalid("output_config.format.schema: must be an object")
    return schema


def _parse(body: dict[str, Any]) -> _Request:
    model = body.get("model")
    if not isinstance(model, str):
        raise _Invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _Invalid("max_tokens: Field required (a positive integer)")
    segments: list[Segment] = []
    messages: list[Message] = []
    system = body.get("system")
    if system is not None:
        parts, text = _segments("system", _blocks(system, "system"))
        segments += parts
        messages.append(Message("system", text))
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _Invalid("messages: at least one message is required")
    for index, item in enumerate(raw):
        where = f"messages.{index}"
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise _Invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        parts, text = _segments(item["role"], _blocks(item.get("content"), where))
        segments += parts
        messages.append(Message(item["role"], text))
    budget = _thinking(body, max_tokens)
    return _Request(
        model=model,
        max_tokens=max_tokens,
        segments=segments,
        messages=messages,
        thinking_budget=budget,
        tool=_tool(body, thinking=budget is not None),
        output_schema=_output_schema(body),
    )


async def messages(request: web.Request) -> web.Response:
    if not request.headers.get("anthropic-version"):
        return _error(400, "invalid_request_error", "anthropic-version: header is required")
    try:
        body = json.loads(await request.text())
    except ValueError as exc:
        return _error(400, "invalid_request_error", f"The request body is not valid JSON: {exc}")
    response = message(request.app, body)
    if response.status == 200:
        await simulate_latency(request)
    return response


def message(app: web.Application, body: Any) -> web.Response:
    """The message (or the error) a request body gets, with no latency added: the online
    route and the message batches answer alike."""
    try:
        if not isinstance(body, dict):
            raise _Invalid("the request body must be a JSON object")
        parsed = _parse(body)
    except _Invalid as exc:
        return _error(400, "invalid_request_error", str(exc))
    if parsed.model not in PERSONAS:
        return _error(404, "not_found_error", f"model: {parsed.model}")

    content = answer(parsed.model, parsed.messages)
    blocks: list[dict[str, Any]] = []
    thinking_tokens = 0
    if parsed.thinking_budget is not None:
        thinking = thinking_text(parsed.model, parsed.messages)
        thinking_tokens = tokens(len(thinking))
        blocks.append(
            {"type": "thinking", "thinking": thinking, "signature": thinking_signature(thinking)}
        )
    if parsed.tool is not None:
        tool_input = json_answer(content, parsed.tool["input_schema"])
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_sim_{uuid.uuid4().hex[:24]}",
                "name": parsed.tool["name"],
                "input": tool_input,
            }
        )
        answer_chars = len(json.dumps(tool_input))
    else:
        if parsed.output_schema is not None:
            content = json.dumps(json_answer(content, parsed.output_schema))
        blocks.append({"type": "text", "text": content})
        answer_chars = len(content)
    cache = app[PREFIX_CACHE_KEY].explicit(f"anthropic/{parsed.model}", parsed.segments)
    usage: dict[str, Any] = {
        # Anthropic counts cache reads and writes apart from input_tokens
        "input_tokens": cache.prompt_tokens - cache.cached_tokens - cache.written_tokens,
        "cache_creation_input_tokens": cache.written_tokens,
        "cache_read_input_tokens": cache.cached_tokens,
        "output_tokens": tokens(answer_chars) + thinking_tokens,
        "service_tier": "standard",
    }
    if thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
    return web.json_response(
        {
            "id": f"msg_sim_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": parsed.model,
            "content": blocks,
            "stop_reason": "tool_use" if parsed.tool is not None else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )
