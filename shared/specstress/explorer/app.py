"""The explorer: server-side rendered pages over the database, and the JSON behind each page.

Everything is read-only: the engine's sessions start read-only, and with authentication on the
explorer connects as the SELECT-only dashboards role. Stored texts (model answers, reasoning,
queries) are untrusted; Jinja escapes every value, and explorer pages carry a Content Security
Policy with no script source at all, so markup in an answer shows as text and never runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from specstress.analysis import ALL_SCENARIOS, Filters
from specstress.analysis.reports import REPORTS, read_report
from specstress.analysis.scenarios import (
    VERDICT_PATTERNS,
    Level,
    Order,
    ScenarioFilter,
    list_scenarios,
    model_profile,
    scenario_detail,
)
from specstress.config import Config
from specstress.errors import InputError
from specstress.method import REFUSAL_TYPES, TOPICS
from specstress.report import collect, render_html

__all__ = ["PAGE_POLICY", "create_app"]

# explorer pages run no script at all; styles are inline in the page
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Explorer:
    engine: AsyncEngine
    config: Config
    config_name: str
    report_file: Path | None
    _report: str | None = field(default=None, repr=False)
    _report_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def model_sets(self) -> list[str]:
        return list(self.config.model_sets)

    async def report_html(self) -> str:
        """The report file when there is one, else the report built once from the database
        (read only: the config mirror is whatever `init` or `report` last wrote)."""
        if self.report_file is not None and self.report_file.is_file():
            return self.report_file.read_text(encoding="utf-8")
        async with self._report_lock:
            if self._report is None:
                page = await collect(
                    self.engine,
                    self.config,
                    config_name=self.config_name,
                    filters=Filters(),
                    explorer_url="",
                )
                self._report = render_html(page)
            return self._report


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json(data: object, status: int = 200) -> Response:
    body = json.dumps(data, default=_json_default, ensure_ascii=False)
    return Response(body, status_code=status, media_type="application/json")


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("specstress.explorer", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{float(v):.0%}"
    env.filters["num"] = lambda v, digits=2: "—" if v is None else f"{float(v):.{digits}f}"
    return env


def _page(explorer: Explorer, template: str, status: int = 200, **context: Any) -> Response:
    html = (
        _environment()
        .get_template(template)
        .render(
            config_name=explorer.config_name,
            model_sets=explorer.model_sets,
            specs=explorer.config.specs,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": PAGE_POLICY})


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def _number(request: Request, name: str) -> float | None:
    value = _text(request, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{name} must be a number, not {value[:40]!r}") from None


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = _text(request, name)
    if value is not None and value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, not {value[:40]!r}")
    return value


def scenario_filter(request: Request, explorer: Explorer) -> ScenarioFilter:
    """The list's filter from the query string; InputError names a bad parameter."""
    level = _choice(request, "level", get_args(Level))
    order = _choice(request, "order", get_args(Order)) or "desc"
    f = ScenarioFilter(
        model_set=_text(request, "model_set") or explorer.model_sets[0],
        selection=_text(request, "selection") or ALL_SCENARIOS,
        d_min=_number(request, "d_min"),
        d_max=_number(request, "d_max"),
        level=level,  # type: ignore[arg-type]
        topic=_text(request, "topic"),
        value=_text(request, "value"),
        generator=_text(request, "generator"),
        verdicts=_text(request, "verdicts"),
        refusal_type=_text(request, "refusal_type"),
        search=_text(request, "q"),
        order=order,  # type: ignore[arg-type]
    )
    f.check(explorer.model_sets)
    return f


def _limit(request: Request) -> int:
    value = _number(request, "limit")
    return 50 if value is None else int(value)


def create_app(
    engine: AsyncEngine,
    config: Config,
    *,
    config_name: str,
    report_file: Path | None = None,
) -> Starlette:
    explorer = Explorer(engine, config, config_name, report_file)

    def guarded(handler: Handler, *, api: bool) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except InputError as exc:
                message = str(exc)
            except DBAPIError as exc:
                if "statement timeout" not in str(exc.orig):
                    raise
                # a rare filter over a wide D range can walk most of the set before a page fills
                message = (
                    "this page took longer than the explorer allows: narrow the filters (a D range, "
                    "high or low disagreement, a value) so fewer scenarios are walked"
                )
            if api:
                return _json({"error": message}, status=400)
            return _page(explorer, "error.html.j2", status=400, message=message)

        return run

    async def scenarios_page(request: Request) -> Response:
        f = scenario_filter(request, explorer)
        page = await list_scenarios(
            engine, f, cursor=_text(request, "cursor"), limit=_limit(request)
        )
        query = {k: v for k, v in request.query_params.items() if k != "cursor" and v}
        return _page(
            explorer,
            "list.html.j2",
            f=f,
            page=page,
            query=query,
            next_url="?" + urlencode({**query, "cursor": page.next_cursor})
            if page.next_cursor
            else None,
            first_url="?" + urlencode(query) if "cursor" in request.query_params else None,
            topics=TOPICS,
            refusal_types=REFUSAL_TYPES,
            generators=[g.model for g in config.roles.generators],
            verdict_patterns=VERDICT_PATTERNS,
            threshold=config.disagreement.threshold,
        )

    async def scenarios_api(request: Request) -> Response:
        f = scenario_filter(request, explorer)
        page = await list_scenarios(
            engine, f, cursor=_text(request, "cursor"), limit=_limit(request)
        )
        return _json({"scenarios": page.rows, "next_cursor": page.next_cursor})

    async def scenario_page(request: Request) -> Response:
        found = await scenario_detail(engine, request.path_params["scenario_id"])
        if found is None:
            return _page(explorer, "error.html.j2", status=404, message="no such scenario")
        return _page(
            explorer,
            "scenario.html.j2",
            s=found,
            model_set=_text(request, "model_set") or explorer.model_sets[0],
        )

    async def scenario_api(request: Request) -> Response:
        found = await scenario_detail(engine, request.path_params["scenario_id"])
        if found is None:
            return _json({"error": "no such scenario"}, status=404)
        return _json(found)

    async def model_page(request: Request) -> Response:
        selection = _text(request, "selection") or ALL_SCENARIOS
        found = await model_profile(engine, request.path_params["model_key"], selection)
        if found is None:
            return _page(explorer, "error.html.j2", status=404, message="no such model")
        return _page(explorer, "model.html.j2", m=found, refusal_types=REFUSAL_TYPES)

    async def model_api(request: Request) -> Response:
        selection = _text(request, "selection") or ALL_SCENARIOS
        found = await model_profile(engine, request.path_params["model_key"], selection)
        if found is None:
            return _json({"error": "no such model"}, status=404)
        return _json(found)

    async def models_page(request: Request) -> Response:
        return _page(explorer, "models.html.j2", models=config.roles.targets)

    async def report_api(request: Request) -> Response:
        name = request.path_params["name"]
        filters = Filters(
            selection=_text(request, "selection") or ALL_SCENARIOS,
            model_set=_text(request, "model_set"),
            spec_id=_text(request, "spec"),
        )
        n = int(_number(request, "n") or 1000)
        return _json({"report": name, "rows": await read_report(engine, config, name, filters, n)})

    async def reports_index(request: Request) -> Response:
        return _json({name: r.description for name, r in REPORTS.items()})

    async def report_page(request: Request) -> Response:
        return HTMLResponse(await explorer.report_html())

    routes = [
        Route("/", guarded(scenarios_page, api=False)),
        Route("/scenario/{scenario_id}", guarded(scenario_page, api=False)),
        Route("/models", guarded(models_page, api=False)),
        Route("/model/{model_key}", guarded(model_page, api=False)),
        Route("/report", guarded(report_page, api=False)),
        Route("/api/scenarios", guarded(scenarios_api, api=True)),
        Route("/api/scenarios/{scenario_id}", guarded(scenario_api, api=True)),
        Route("/api/models/{model_key}", guarded(model_api, api=True)),
        Route("/api/reports", guarded(reports_index, api=True)),
        Route("/api/reports/{name}", guarded(report_api, api=True)),
    ]
    return Starlette(routes=routes)
