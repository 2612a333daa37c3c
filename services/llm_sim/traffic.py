"""How the simulator behaves as traffic: rate limits and their headers, latency, injected faults,
and counters of everything it served.

One aiohttp middleware sits in front of the generation routes of all three protocols, so the
same conditions apply whichever wire format a client speaks, and each error is shaped the way
that protocol's real API shapes it. Draws are deterministic: a request's fault and latency
come from a hash of the seed, the model, the request body and how many times that same body
was seen before, so a rerun injects the same faults whatever order concurrent requests arrive
in, and a retried request gets a fresh draw.

`GET /sim/stats` returns, per model, the requests received and their outcomes: `ok` counts
complete answers (the calls a provider would bill, malformed content included), so a test can
compare it with the ledger's paid rows to prove nothing was paid twice; `in_flight` and
`peak_in_flight` count the model requests open at once, now and at most. `PUT /sim/conditions`
replaces the conditions while the simulator runs (e.g. a fault that heals).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from services.llm_sim.conditions import Conditions, Faults, Limits, describe

Protocol = Literal["openai", "anthropic", "gemini"]

TRAFFIC_KEY: web.AppKey[Traffic] = web.AppKey("traffic")
_GEMINI_PATH = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")
_MAX_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens")
_UNIT = NormalDist()
# how often a hanging request looks whether its client has given up
_HANG_POLL_SECONDS = 0.1


def _protocol(request: web.Request) -> Protocol | None:
    if request.method != "POST":
        return None
    if request.path == "/v1/chat/completions":
        return "openai"
    if request.path == "/v1/messages":
        return "anthropic"
    if _GEMINI_PATH.match(request.path):
        return "gemini"
    return None


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in reset headers: "120ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class _Bucket:
    """A token bucket: refills at the per-minute rate, holds `burst_seconds` of it."""

    def __init__(self, per_minute: int, burst_seconds: float, now: float) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute * burst_seconds / 60.0)
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def shortfall(self, cost: float) -> float:
        """Seconds until `cost` fits (0 when it fits now); a cost above capacity needs a full
        bucket."""
        need = min(cost, self.capacity)
        return max(0.0, (need - self.level) / self.rate)

    def take(self, cost: float) -> None:
        self.level -= min(cost, self.capacity)

    def reset_seconds(self) -> float:
        return (self.capacity - self.level) / self.rate


@dataclass
class _ModelStats:
    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Call:
    protocol: Protocol
    model: str
    body: bytes
    tokens: int


class Traffic:
    def __init__(self, conditions: Conditions) -> None:
        self.conditions = conditions
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._seen: Counter[tuple[str, str]] = Counter()
        self._stats: dict[str, _ModelStats] = {}
        self._in_flight = 0
        self._peak_in_flight = 0

    def stats(self) -> dict[str, Any]:
        models = {
            model: {"requests": s.requests, **dict(sorted(s.outcomes.items()))}
            for model, s in sorted(self._stats.items())
        }
        totals: Counter[str] = Counter()
        for counts in models.values():
            totals.update(counts)
        return {
            "simulator": True,
            "models": models,
            "totals": dict(sorted(totals.items())),
            "in_flight": self._in_flight,
            "peak_in_flight": self._peak_in_flight,
        }

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        call = await _read_call(request)
        if call is None:
            return await handler(request)
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            return await self._serve(request, handler, call)
        finally:
            self._in_flight -= 1

    async def _serve(
        self, request: web.Request, handler: Handler, call: _Call
    ) -> web.StreamResponse:
        stats = self._stats.setdefault(call.model, _ModelStats())
        stats.requests += 1
        settings = self.conditions.for_model(call.model)
        fault_draw, latency_draw = self._draws(call)
        headers: dict[str, str] = {}
        if settings.limits is not None:
            wait = self._admit(call, settings.limits)
            headers = self._limit_headers(call, settings.limits)
            if wait > 0:
                stats.outcomes["limit_exceeded"] += 1
                return _limit_refusal(call, wait, headers)
        faults = settings.faults
        fault = faults.pick(fault_draw) if faults is not None else None
        served_faults = ("truncated", "malformed", "nul_byte")
        if faults is not None and fault is not None and fault not in served_faults:
            stats.outcomes[fault] += 1
            if fault == "hang":
                return await _hang(request)
            return _fault_response(call.protocol, fault, faults, headers)
        if settings.latency is not None:
            await asyncio.sleep(settings.latency.seconds(_UNIT.inv_cdf(latency_draw)))
        response = await handler(request)
        if response.status != 200 or not isinstance(response, web.Response):
            stats.outcomes[f"http_{response.status}"] += 1
            response.headers.update(headers)
            return response
        if fault == "truncated":
            stats.outcomes["truncated"] += 1
            body = bytes(response.body or b"")  # type: ignore[arg-type]
            response = web.Response(
                body=body[: len(body) // 2], status=200, content_type="application/json"
            )
        elif fault in ("malformed", "nul_byte"):
            stats.outcomes[fault] += 1
            stats.outcomes["ok"] += 1
            change = _broken if fault == "malformed" else _with_nul
            response = _malformed(call.protocol, response, change)
        else:
            stats.outcomes["ok"] += 1
        response.headers.update(headers)
        return response

    def _draws(self, call: _Call) -> tuple[float, float]:
        digest = hashlib.sha256(call.body).hexdigest()
        nth = self._seen[(call.model, digest)]
        self._seen[(call.model, digest)] += 1
        seed = self.conditions.seed
        mixed = hashlib.sha256(f"{seed}:{call.model}:{digest}:{nth}".encode()).digest()
        fault = int.from_bytes(mixed[:8], "big") / 2**64
        # kept inside (0, 1) so the normal quantile is finite
        latency = (int.from_bytes(mixed[8:16], "big") + 0.5) / (2**64 + 1)
        return fault, latency

    def _bucket(self, model: str, kind: str, per_minute: int, limits: Limits) -> _Bucket:
        bucket = self._buckets.get((model, kind))
        if bucket is None or bucket.limit != per_minute:
            bucket = _Bucket(per_minute, limits.burst_seconds, time.monotonic())
            self._buckets[(model, kind)] = bucket
        return bucket

    def _admit(self, call: _Call, limits: Limits) -> float:
        """0 after taking the call's share of every bucket, else the seconds it must wait."""
        now = time.monotonic()
        wanted: list[tuple[_Bucket, float]] = []
        if limits.requests_per_minute is not None:
            wanted.append(
                (self._bucket(call.model, "requests", limits.requests_per_minute, limits), 1)
            )
        if limits.tokens_per_minute is not None:
            bucket = self._bucket(call.model, "tokens", limits.tokens_per_minute, limits)
            wanted.append((bucket, call.tokens))
        for bucket, _ in wanted:
            bucket.refill(now)
        wait = max((bucket.shortfall(cost) for bucket, cost in wanted), default=0.0)
        if wait == 0:
            for bucket, cost in wanted:
                bucket.take(cost)
        return wait

    def _limit_headers(self, call: _Call, limits: Limits) -> dict[str, str]:
        headers: dict[str, str] = {}
        for kind, per_minute in (
            ("requests", limits.requests_per_minute),
            ("tokens", limits.tokens_per_minute),
        ):
            if per_minute is None:
                continue
            bucket = self._buckets[(call.model, kind)]
            remaining = str(max(0, math.floor(bucket.level)))
            reset = bucket.reset_seconds()
            headers[f"x-ratelimit-limit-{kind}"] = str(per_minute)
            headers[f"x-ratelimit-remaining-{kind}"] = remaining
            headers[f"x-ratelimit-reset-{kind}"] = go_duration(reset)
            if call.protocol == "anthropic":
                instant = datetime.now(UTC) + timedelta(seconds=reset)
                prefix = f"anthropic-ratelimit-{kind}"
                headers[f"{prefix}-limit"] = str(per_minute)
                headers[f"{prefix}-remaining"] = remaining
                headers[f"{prefix}-reset"] = instant.isoformat(timespec="seconds")
        return headers


def install(app: web.Application, conditions: Conditions) -> None:
    """Put the traffic middleware in front of the provider routes and add `/sim/stats` and
    `/sim/conditions` (GET shows them, PUT replaces them)."""
    traffic = Traffic(conditions)
    app[TRAFFIC_KEY] = traffic
    app.middlewares.append(traffic.middleware)
    app.router.add_get("/sim/stats", _stats)
    app.router.add_get("/sim/conditions", _conditions)
    app.router.add_put("/sim/conditions", _replace_conditions)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[TRAFFIC_KEY].stats())


async def _conditions(request: web.Request) -> web.Response:
    conditions = request.app[TRAFFIC_KEY].conditions
    return web.Response(text=describe(conditions), content_type="application/json")


async def _replace_conditions(request: web.Request) -> web.Response:
    """Play the provider under new conditions from now on (a fault healed, a limit changed);
    the counters of `/sim/stats` go on."""
    try:
        conditions = Conditions.model_validate_json(await request.read())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        return web.json_response({"error": f"{where}: {first['msg']}"}, status=400)
    request.app[TRAFFIC_KEY].conditions = conditions
    return web.Response(text=describe(conditions), content_type="application/json")


async def _read_call(request: web.Request) -> _Call | None:
    """The call a provider request makes, or None when it is not one (or names no model)."""
    protocol = _protocol(request)
    if protocol is None:
        return None
    body = await request.read()
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    if protocol == "gemini":
        found = _GEMINI_PATH.match(request.path)
        model = found.group(1) if found else None
        config = payload.get("generationConfig")
        limit = config.get("maxOutputTokens") if isinstance(config, dict) else None
    else:
        model = payload.get("model")
        limit = next((payload[f] for f in _MAX_OUTPUT_FIELDS if f in payload), None)
    if not isinstance(model, str):
        return None
    output = limit if isinstance(limit, int) and not isinstance(limit, bool) else 0
    # the whole body at four characters a token, like a provider's estimate before the call
    return _Call(protocol, model, body, math.ceil(len(body) / 4) + max(0, output))


async def _hang(request: web.Request) -> web.StreamResponse:
    """Never answer: wait until the client gives up and closes the connection."""
    # aiohttp signals a client's disconnect to no one unless handler cancellation is on in the
    # runner, which the simulator does not rely on: look at the transport instead
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(_HANG_POLL_SECONDS)
    return web.Response(status=408)


def _limit_refusal(call: _Call, wait: float, headers: dict[str, str]) -> web.Response:
    retry = {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
    message = f"Rate limit reached for {call.model} on the simulator. Please try again later."
    return _error(
        call.protocol, 429, "rate_limited", message, headers={**headers, **retry}, wait=wait
    )


def _fault_response(
    protocol: Protocol, fault: str, faults: Faults, headers: dict[str, str]
) -> web.Response:
    wait = faults.retry_after_seconds
    retry = {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
    status, message = {
        "rate_limited": (429, "Rate limit reached (injected by the simulator)."),
        "server_error": (500, "The server had an error (injected by the simulator)."),
        "unavailable": (503, "The service is unavailable (injected by the simulator)."),
        "overloaded": (529, "Overloaded (injected by the simulator)."),
        "bad_request": (400, "Invalid request (injected by the simulator)."),
        "unauthorized": (401, "Invalid API key (injected by the simulator)."),
        "insufficient_quota": (429, ""),
    }[fault]
    extra = retry if status in (429, 503) and fault != "insufficient_quota" else {}
    return _error(protocol, status, fault, message, headers={**headers, **extra}, wait=wait)


# (OpenAI type and code, Anthropic type, Gemini status) of each kind of refusal
_SHAPES: dict[str, tuple[str, str | None, str, str]] = {
    "rate_limited": ("requests", "rate_limit_exceeded", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    "server_error": ("server_error", None, "api_error", "INTERNAL"),
    "unavailable": ("server_error", None, "api_error", "UNAVAILABLE"),
    "overloaded": ("server_error", None, "overloaded_error", "UNAVAILABLE"),
    "bad_request": ("invalid_request_error", None, "invalid_request_error", "INVALID_ARGUMENT"),
    "unauthorized": (
        "invalid_request_error",
        "invalid_api_key",
        "authentication_error",
        "UNAUTHENTICATED",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        "insufficient_quota",
        "invalid_request_error",
        "RESOURCE_EXHAUSTED",
    ),
}
# each API's own words for an account that is out of money or quota
_NO_QUOTA = {
    "openai": "You exceeded your current quota, please check your plan and billing details.",
    "anthropic": "Your credit balance is too low to access the Anthropic API. Please go to "
    "Plans & Billing to upgrade or purchase credits.",
    "gemini": "You exceeded your current quota, please check your plan and billing details.",
}
# how Gemini names the quota that ran out: a per-day one, which waiting minutes does not fix
_GEMINI_DAILY_QUOTA = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel",
        }
    ],
}


def _error(
    protocol: Protocol,
    status: int,
    kind: str,
    message: str,
    *,
    headers: dict[str, str],
    wait: float,
) -> web.Response:
    openai_type, openai_code, anthropic_type, gemini_status = _SHAPES[kind]
    if kind == "insufficient_quota":
        message = _NO_QUOTA[protocol]
        if protocol == "anthropic":
            status = 400
    body: dict[str, Any]
    if protocol == "anthropic":
        body = {"type": "error", "error": {"type": anthropic_type, "message": message}}
    elif protocol == "gemini":
        error: dict[str, Any] = {"code": status, "message": message, "status": gemini_status}
        if kind == "insufficient_quota":
            error["details"] = [_GEMINI_DAILY_QUOTA]
        elif status == 429:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{math.ceil(wait)}s",
                }
            ]
        body = {"error": error}
    else:
        body = {
            "error": {"message": message, "type": openai_type, "param": None, "code": openai_code}
        }
    return web.json_response(body, status=status, headers=headers)


def _broken(text: str) -> str:
    """The answer cut off halfway: never a complete JSON value, whatever it was."""
    return text[: len(text) // 2]


def _with_nul(text: str) -> str:
    middle = len(text) // 2
    return f"{text[:middle]}\x00{text[middle:]}"


def _malformed(
    protocol: Protocol, response: web.Response, change: Callable[[str], str]
) -> web.Response:
    """The same envelope with its answer text changed (broken, or holding a NUL byte)."""
    payload = json.loads(bytes(response.body or b""))  # type: ignore[arg-type]
    if protocol == "openai":
        for choice in payload.get("choices", []):
            message = choice.get("message", {})
            if isinstance(message.get("content"), str):
                message["content"] = change(message["content"])
    elif protocol == "anthropic":
        for block in payload.get("content", []):
            if block.get("type") == "text":
                block["text"] = change(block["text"])
            elif block.get("type") == "tool_use":
                # a tool's input is an object by construction: make it one of the wrong shape
                block["input"] = {"unexpected": change(json.dumps(block.get("input")))}
    else:
        for candidate in payload.get("candidates", []):
            for part in candidate.get("content", {}).get("parts", []):
                if isinstance(part.get("text"), str) and not part.get("thought"):
                    part["text"] = change(part["text"])
    return web.json_response(payload, status=response.status)
