"""HTTP side of the specstress LLM simulator: OpenAI chat completions, the routes of the other
protocols (`anthropic_api`, `gemini_api`) and the planted-truth routes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from services.llm_sim import (
    anthropic_api,
    batches,
    catalogue,
    embeddings,
    gemini_api,
    openai_extras,
    traffic,
)
from services.llm_sim.answers import Message, answer
from services.llm_sim.app_state import LATENCY_KEY, PREFIX_CACHE_KEY
from services.llm_sim.conditions import Conditions
from services.llm_sim.keys import require_key as require_key_middleware
from services.llm_sim.personas import (
    PERSONAS,
    parse_scenario,
    planted_distinctive_values,
    planted_positions,
    planted_refusal_type,
    planted_topics,
)
from services.llm_sim.prefix_cache import PrefixCache

SERVER_HEADER = "specstress-llm-sim/0.1 (simulator)"
_LATENCY_KEY = LATENCY_KEY


class _RequestError(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _error(status: int, message: str, code: str | None, param: str | None = None) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    return web.json_response(body, status=status)


def _unknown_model(model: str) -> web.Response:
    return _error(
        404,
        f"The model `{model}` does not exist on this simulator.",
        "model_not_found",
        "model",
    )


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text())
    except ValueError as exc:
        raise _RequestError(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _RequestError("The request body must be a JSON object.")
    return body


def _text_of(content: object, index: int) -> str:
    """Return a message's text; OpenAI allows a string, null, or a list of typed parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise _RequestError(f"messages[{index}].content holds an invalid part.", "messages")
            if part.get("type") == "text":
                texts.append(part["text"])
        return "\n".join(texts)
    raise _RequestError(f"messages[{index}].content must be a string or a list.", "messages")


def _messages(raw: object) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise _RequestError("`messages` must be a non-empty array.", "messages")
    messages: list[Message] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise _RequestError(f"messages[{index}] needs a string `role`.", "messages")
        messages.append(Message(item["role"], _text_of(item.get("content"), index)))
    return messages


def _check_options(body: dict[str, Any]) -> None:
    """Reject sampling options of the wrong type; their values do not change the answer."""
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _RequestError(f"`{name}` must be a number.", name)
    for name in ("max_tokens", "max_completion_tokens", "seed", "n"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _RequestError(f"`{name}` must be an integer.", name)
    problem = openai_extras.option_problem(body)
    if problem is not None:
        raise _RequestError(*problem)


async def _chat_completions(request: web.Request) -> web.Response:
    try:
        body = await _json_object(request)
    except _RequestError as exc:
        return _error(400, exc.message, None, exc.param)
    response = chat_completion(request.app, body)
    if response.status == 200:
        latency_ms = request.app[_LATENCY_KEY]
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
    return response


def chat_completion(app: web.Application, body: dict[str, Any]) -> web.Response:
    """The chat completion (or the error) a request body gets, with no latency added: the
    online route and the batch endpoints answer alike."""
    try:
        model = body.get("model")
        if not isinstance(model, str):
            raise _RequestError("`model` must be a string.", "model")
        if model not in PERSONAS:
            return _unknown_model(model)
        messages = _messages(body.get("messages"))
        _check_options(body)
    except _RequestError as exc:
        return _error(400, exc.message, None, exc.param)
    content, usage = openai_extras.completion(
        app[PREFIX_CACHE_KEY], model, messages, answer(model, messages), body
    )
    return web.json_response(
        {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "system_fingerprint": None,
        }
    )


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "simulator": True, "models": len(PERSONAS)})


async def _target_query(request: web.Request) -> tuple[str, str] | web.Response:
    """The (target persona, query) a planted-truth request names, or the error response."""
    try:
        body = await _json_object(request)
        model, query = body.get("model"), body.get("query")
        if not isinstance(model, str) or not isinstance(query, str):
            raise _RequestError("`model` and `query` must be strings.")
    except _RequestError as exc:
        return _error(400, exc.message, None, exc.param)
    if model not in PERSONAS:
        return _unknown_model(model)
    if PERSONAS[model].role != "target":
        return _error(400, f"`{model}` is not a target persona.", "not_a_target", "model")
    return model, query


async def _planted(request: web.Request) -> web.Response:
    asked = await _target_query(request)
    if isinstance(asked, web.Response):
        return asked
    model, query = asked
    value1_position, value2_position = planted_positions(model, query)
    return web.json_response(
        {"value1_position": value1_position, "value2_position": value2_position}
    )


async def _planted_labels(request: web.Request) -> web.Response:
    """The planted topics of a query's scenario, and the refusal type and distinctive values of
    a target persona's answer to it."""
    asked = await _target_query(request)
    if isinstance(asked, web.Response):
        return asked
    model, query = asked
    value1, value2, _ = parse_scenario(query) or ("", "", "neutral")
    return web.json_response(
        {
            "topics": planted_topics(value1, value2),
            "refusal_type": planted_refusal_type(model, query),
            "distinctive_values": list(planted_distinctive_values(model, query)),
        }
    )


async def _label_response(_: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


def build_app(
    latency_ms: float = 0.0, *, require_key: bool = False, conditions: Conditions | None = None
) -> web.Application:
    """Return the simulator's aiohttp application; ``latency_ms`` delays every completion,
    ``require_key`` refuses provider requests that carry no API key, and ``conditions`` sets
    rate limits, latency and faults (see ``services.llm_sim.traffic``)."""
    conditions = conditions or Conditions()
    app = web.Application(
        middlewares=[require_key_middleware] if require_key else [],
        # a batch's input file or request list runs to hundreds of megabytes
        client_max_size=batches.MAX_UPLOAD_BYTES,
    )
    traffic.install(app, conditions)
    app[_LATENCY_KEY] = latency_ms
    app[PREFIX_CACHE_KEY] = PrefixCache()
    app.on_response_prepare.append(_label_response)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/messages", anthropic_api.messages)
    app.router.add_post(gemini_api.ROUTE, gemini_api.generate_content)
    catalogue.add_routes(app)
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/sim/planted", _planted)
    app.router.add_post("/sim/planted/labels", _planted_labels)
    embeddings.add_routes(app)
    batches.add_routes(
        app,
        conditions.batches,
        conditions.seed,
        {"openai": chat_completion, "anthropic": anthropic_api.message},
    )
    return app
