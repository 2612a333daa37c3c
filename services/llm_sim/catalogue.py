"""The simulator's model listings, and a catalogue that changes while it runs.

Each protocol lists the catalogue its own way, with its own paging, so a client that follows
the real APIs reads it:
- OpenAI-compatible `GET /v1/models`: `{"object": "list", "data": [{id, object, created,
  owned_by}]}`, whole;
- Anthropic `GET /v1/models` (told apart by its `anthropic-version` header): newest first,
  `limit` (default 20, at most 1000) and `after_id`/`before_id`, answering `data`, `has_more`,
  `first_id`, `last_id`;
- Gemini `GET /v1beta/models`: `pageSize` (default 50, at most 1000) and an opaque
  `pageToken`, answering `models` (name `models/<id>`, displayName, supportedGenerationMethods)
  and `nextPageToken`; the embedding model is listed too, without generateContent.

`POST /sim/models` with `{"release": ID}` (optionally `created`, `display_name`) lists a model,
`{"retire": ID}` takes it off, `{"deprecate": ID}` keeps it listed with a past shutdown date;
`GET /sim/models` shows the catalogue. Requests for a model are answered whether it is listed
or not, as providers keep answering for a while after a model leaves their list.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.llm_sim.personas import PERSONAS, UNRELEASED

# fixed so the initial listing is the same on every start
INITIAL_CREATED = 1_760_000_000
EMBEDDING_MODEL = "sim-embed"
ANTHROPIC_DEFAULT_LIMIT = 20
GEMINI_DEFAULT_PAGE = 50
MAX_PAGE = 1000


@dataclass
class Listed:
    model_id: str
    created: int
    display_name: str
    shutdown_date: str | None = None


class Catalogue:
    def __init__(self) -> None:
        self.models: dict[str, Listed] = {
            model_id: Listed(model_id, INITIAL_CREATED, _display(model_id))
            for model_id in PERSONAS
            if model_id not in UNRELEASED
        }

    def newest_first(self) -> list[Listed]:
        return sorted(self.models.values(), key=lambda m: (-m.created, m.model_id))

    def describe(self) -> dict[str, Any]:
        return {
            "models": [
                {
                    "id": m.model_id,
                    "created": m.created,
                    "display_name": m.display_name,
                    "shutdown_date": m.shutdown_date,
                }
                for m in self.newest_first()
            ]
        }


CATALOGUE_KEY: web.AppKey[Catalogue] = web.AppKey("catalogue", Catalogue)


def _display(model_id: str) -> str:
    return " ".join(part.capitalize() for part in model_id.split("-"))


def _iso(created: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))


def _bad(message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return web.json_response(body, status=400)


def _int_query(request: web.Request, name: str, default: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= MAX_PAGE else None


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models`: the Anthropic listing for Anthropic clients, else OpenAI's."""
    catalogue = request.app[CATALOGUE_KEY]
    if "anthropic-version" in request.headers:
        return _anthropic(request, catalogue)
    data = []
    for m in catalogue.newest_first():
        item: dict[str, Any] = {
            "id": m.model_id,
            "object": "model",
            "created": m.created,
            "owned_by": "llm-sim",
        }
        if m.shutdown_date is not None:
            item["shutdown_date"] = m.shutdown_date
        data.append(item)
    return web.json_response({"object": "list", "data": data})


def _anthropic(request: web.Request, catalogue: Catalogue) -> web.Response:
    limit = _int_query(request, "limit", ANTHROPIC_DEFAULT_LIMIT)
    if limit is None:
        return web.json_response(
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "limit: 1 to 1000"},
            },
            status=400,
        )
    ordered = [m for m in catalogue.newest_first() if m.shutdown_date is None]
    ids = [m.model_id for m in ordered]
    after, before = request.query.get("after_id"), request.query.get("before_id")
    if after is not None and after in ids:
        start = ids.index(after) + 1
        page = ordered[start : start + limit]
        more = start + limit < len(ordered)
    elif before is not None and before in ids:
        end = ids.index(before)
        page = ordered[max(0, end - limit) : end]
        more = end - limit > 0
    else:
        page = ordered[:limit]
        more = limit < len(ordered)
    return web.json_response(
        {
            "data": [
                {
                    "type": "model",
                    "id": m.model_id,
                    "display_name": m.display_name,
                    "created_at": _iso(m.created),
                }
                for m in page
            ],
            "has_more": more,
            "first_id": page[0].model_id if page else None,
            "last_id": page[-1].model_id if page else None,
        }
    )


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str) -> int | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and value >= 0 else None


async def gemini_models(request: web.Request) -> web.Response:
    """`GET /v1beta/models`."""
    catalogue = request.app[CATALOGUE_KEY]
    size = _int_query(request, "pageSize", GEMINI_DEFAULT_PAGE)
    token = request.query.get("pageToken")
    offset = 0 if not token else _offset(token)
    if size is None or offset is None:
        problem = {"code": 400, "message": "Invalid page.", "status": "INVALID_ARGUMENT"}
        return web.json_response({"error": problem}, status=400)
    entries = [
        {
            "name": f"models/{m.model_id}",
            "version": "001",
            "displayName": m.display_name,
            "inputTokenLimit": 1_048_576,
            "outputTokenLimit": 65_536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        }
        for m in catalogue.newest_first()
        if m.shutdown_date is None
    ]
    entries.append(
        {
            "name": f"models/{EMBEDDING_MODEL}",
            "version": "001",
            "displayName": "Sim Embed",
            "supportedGenerationMethods": ["embedContent"],
        }
    )
    page = entries[offset : offset + size]
    body: dict[str, Any] = {"models": page}
    if offset + size < len(entries):
        body["nextPageToken"] = _token(offset + size)
    return web.json_response(body)


async def show(request: web.Request) -> web.Response:
    return web.json_response(request.app[CATALOGUE_KEY].describe())


async def change(request: web.Request) -> web.Response:
    """`POST /sim/models`: release, retire or deprecate one model."""
    try:
        body = json.loads(await request.text())
    except ValueError:
        return _bad("the body is not JSON")
    if not isinstance(body, dict):
        return _bad("the body must be an object")
    catalogue = request.app[CATALOGUE_KEY]
    actions = [k for k in ("release", "retire", "deprecate") if k in body]
    if len(actions) != 1 or not isinstance(body[actions[0]], str) or not body[actions[0]]:
        return _bad("name one model id under exactly one of release, retire, deprecate")
    action, model_id = actions[0], body[actions[0]]
    if action == "release":
        created = body.get("created", int(time.time()))
        display = body.get("display_name", _display(model_id))
        if not isinstance(created, int) or not isinstance(display, str):
            return _bad("created must be an integer, display_name a string")
        catalogue.models[model_id] = Listed(model_id, created, display)
    elif model_id not in catalogue.models:
        return _bad(f"{model_id} is not listed")
    elif action == "retire":
        del catalogue.models[model_id]
    else:
        catalogue.models[model_id].shutdown_date = time.strftime("%Y-%m-%d", time.gmtime(0))
    return web.json_response(catalogue.describe())


def add_routes(app: web.Application) -> None:
    app[CATALOGUE_KEY] = Catalogue()
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1beta/models", gemini_models)
    app.router.add_get("/sim/models", show)
    app.router.add_post("/sim/models", change)
