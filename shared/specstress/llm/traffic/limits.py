"""Rate limits that hold across every process of every service.

Each (base_url, model_id, API-key variable) has one row in `llm_rate_limits`, and every call
reserves its slot there before it goes out. The pacing is GCRA (the generic cell rate
algorithm): a request bucket and a token bucket are each one "theoretical arrival time" (when
the fleet's calls so far will have been paid off at the per-minute rate). A call may start once
each bucket's backlog is within one second's worth of burst, and reserving moves the buckets on
by its share of a minute: one request, and its estimated tokens (a call bigger than the burst
goes when its turn comes and the calls after it wait it off, so it is never starved). A call
waits for its slot while it holds its worker; a slot further away than
`limits.max_wait_seconds` is not taken and the call is deferred (`LLMDeferred`, which the
service runtime turns into a delayed nak).

Why Postgres and not NATS KV for the shared state:
- Correct under concurrency by construction: a reservation is one statement that locks the
  row, computes from its newest version with the database's clock and writes back. NATS KV only
  offers compare-and-set on a revision, so under contention every loser re-reads and retries:
  the round trips per call grow with the number of writers exactly when the load is highest,
  and every client would reason with its own clock.
- Latency: one round trip per call (two with a token limit, whose estimate is corrected after
  the call), in autocommit: the row lock is held for one statement, and these commits do not
  wait for the WAL flush (a crash can lose a moment of pacing state, never data). On a 2-core
  box one row takes about 3,000 reservations/s at 0.3 ms each (bench/ratelimit.py); 1,000
  calls/s spread over a run's models is far less per row, and a real provider's per-key limit
  (a few thousand RPM) is a small fraction of it.
- A process that dies holding tokens costs nothing: the buckets are times, not counters of
  slots handed out, so there is nothing to give back. A reservation whose call never went out
  leaves its slot unused for a moment (under-use, never an overrun), and an unconsumed token
  estimate stays counted (conservative) until time moves past it.
- Postgres is already the record every service has a pool to; NATS KV would be a second
  dependency giving a weaker answer.

Concurrency stays capped per process (`max_concurrency`), not fleet-wide: hosted providers
limit requests and tokens per minute, not calls in flight, and the number in flight follows
from rate x latency. A fleet-wide cap would need leases that expire when their holder dies (a
heartbeat per call, or a TTL longer than the slowest call), all for a limit no hosted provider
enforces; self-hosted servers queue the excess themselves.

Adaptation: a 429 halves the fleet's rate factor (once per cooldown, so one burst of 429s
counts once; never below 5%) and its retry-after blocks the whole fleet until it passes; each
success adds 1/RPM back, so a halved rate is back to the full limit after about a minute of
successes. Rate-limit headers align the local view: an announced per-minute limit below the
configured one (or where none is configured) becomes the limit; a `remaining` smaller than one
second's burst holds the bucket back so that only what the provider says is left can go; with
nothing remaining, the fleet waits for one unit to refill.

Models with no configured limit make no database round trip until they show one (limit
headers or a 429); from then on this process paces them too.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import ModelConfig
from specstress.llm.errors import LLMDeferred, LLMError
from specstress.llm.messages import ChatMessage, Usage
from specstress.llm.traffic import store as db
from specstress.llm.traffic.headers import ProviderRoom, parse_room

__all__ = [
    "BURST_SECONDS",
    "DECREASE",
    "DECREASE_COOLDOWN_SECONDS",
    "MIN_FACTOR",
    "TOKEN_ONLY_INCREASE",
    "Attempt",
    "RateLimiter",
    "estimate_tokens",
    "limit_key",
]

# room for one second's worth of calls at once; a provider's own bucket holds far more
BURST_SECONDS = 1.0
DECREASE = 0.5
MIN_FACTOR = 0.05
# 429s within this long of a decrease belong to the same burst and do not decrease again
DECREASE_COOLDOWN_SECONDS = 5.0
# step back up per success when only a token limit is known (no request rate to scale by)
TOKEN_ONLY_INCREASE = 0.02
# output sizes that bound the answer, by the names the protocols give them
_MAX_OUTPUT_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens")

_current: ContextVar[Attempt | None] = ContextVar("specstress_rate_attempt", default=None)


def limit_key(model: ModelConfig) -> str:
    """The identity of a rate limit: where the calls go, which model, which key pays."""
    return _limit_key(model.base_url.rstrip("/"), model.model_id, model.api_key_env)


@functools.lru_cache(maxsize=1024)
def _limit_key(base_url: str, model_id: str, api_key_env: str | None) -> str:
    # asked on every attempt, of a handful of endpoints
    return hashlib.sha256(json.dumps([base_url, model_id, api_key_env]).encode()).hexdigest()


def estimate_tokens(model: ModelConfig, messages: Sequence[ChatMessage]) -> int:
    """What a call may count against a token limit before its usage is known: the prompt at
    four characters a token plus the most it may write."""
    prompt = math.ceil(sum(len(m.content) for m in messages) / 4)
    for name in _MAX_OUTPUT_PARAMS:
        value = model.params.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return prompt + value
    return prompt + model.limits.assumed_output_tokens


@dataclass
class Attempt:
    """One HTTP attempt as the limiter sees it: its slot, and the headers its answer carried."""

    model: ModelConfig
    key: str
    tokens: int
    reservation: db.Reservation | None = None
    # case-insensitive
    headers: Mapping[str, str] | None = None


class RateLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = db.pacing_engine(engine)
        # keys this process paces: configured limits, or limits the provider has shown
        self._paced: set[str] = set()

    async def acquire(self, model: ModelConfig, messages: Sequence[ChatMessage]) -> Attempt:
        """Wait for this call's slot; LLMDeferred when the slot is too far away."""
        attempt = Attempt(model, limit_key(model), estimate_tokens(model, messages))
        limits = model.limits
        configured = bool(limits.requests_per_minute or limits.tokens_per_minute)
        if not configured and attempt.key not in self._paced:
            return attempt
        await self._ensure_row(attempt)
        reservation = await db.reserve(
            self._engine,
            attempt.key,
            requests_per_minute=limits.requests_per_minute,
            tokens_per_minute=limits.tokens_per_minute,
            tokens=attempt.tokens,
            burst_seconds=BURST_SECONDS,
            max_wait_seconds=limits.max_wait_seconds,
        )
        attempt.reservation = reservation
        metrics.llm_rate_factor.labels(model.key).set(reservation.rate_factor)
        if not reservation.admitted:
            metrics.llm_deferred.labels(model.key, "rate_limit").inc()
            raise LLMDeferred(
                "retryable",
                f"{model.key}: the next free slot under its rate limit is "
                f"{reservation.wait_seconds:.1f} s away",
                delay=reservation.wait_seconds,
                cause="rate_limit",
            )
        metrics.llm_rate_wait.labels(model.key).observe(reservation.wait_seconds)
        if reservation.wait_seconds > 0:
            await asyncio.sleep(reservation.wait_seconds)
        return attempt

    async def aclose(self) -> None:
        await self._engine.dispose()

    @contextmanager
    def watching(self, attempt: Attempt) -> Iterator[None]:
        """Within this block, the headers of the HTTP answer are kept on `attempt`."""
        token = _current.set(attempt)
        try:
            yield
        finally:
            _current.reset(token)

    async def on_response(self, response: httpx.Response) -> None:
        """httpx response hook: the wire-protocol code stays unaware of rate limits."""
        self.on_headers(response.headers)

    def on_headers(self, headers: Mapping[str, str]) -> None:
        """Keep an answer's headers on the attempt being watched, if any."""
        attempt = _current.get()
        if attempt is not None:
            attempt.headers = headers

    async def settle(
        self, attempt: Attempt, *, usage: Usage | None = None, error: LLMError | None = None
    ) -> None:
        """Teach the shared row what this attempt showed: its real token count, a 429 and its
        retry-after, and the provider's own view of the room left."""
        room = parse_room(attempt.headers) if attempt.headers is not None else None
        throttled = error is not None and error.http_status == 429
        reservation = attempt.reservation
        known_rpm = reservation.learned_requests_per_minute if reservation else None
        known_tpm = reservation.learned_tokens_per_minute if reservation else None
        learned_rpm = _news(room.requests.limit if room else None, known_rpm)
        learned_tpm = _news(room.tokens.limit if room else None, known_tpm)
        if attempt.key not in self._paced:
            if not (throttled or learned_rpm or learned_tpm or attempt.model.limits.configured):
                return
            await self._ensure_row(attempt)
        settlement = db.Settlement(
            tokens_per_minute=attempt.model.limits.tokens_per_minute,
            token_correction=_token_correction(attempt, usage),
            block_seconds=_block_seconds(error, room),
            throttled=throttled,
            succeeded=error is None,
            cooldown_seconds=DECREASE_COOLDOWN_SECONDS,
            min_factor=MIN_FACTOR,
            decrease=DECREASE,
            increase=_increase(reservation) if error is None else 0.0,
            learned_requests_per_minute=learned_rpm,
            learned_tokens_per_minute=learned_tpm,
            **_floors(reservation, room),
        )
        if not _teaches_anything(settlement):
            return  # spare the round trip
        factor = await db.settle(self._engine, attempt.key, settlement)
        metrics.llm_rate_factor.labels(attempt.model.key).set(factor)

    async def _ensure_row(self, attempt: Attempt) -> None:
        if attempt.key in self._paced:
            return
        model = attempt.model
        await db.ensure_limit(
            self._engine, attempt.key, model.base_url.rstrip("/"), model.model_id, model.api_key_env
        )
        self._paced.add(attempt.key)


def _teaches_anything(s: db.Settlement) -> bool:
    return bool(
        s.token_correction
        or s.throttled
        or s.increase
        or s.block_seconds
        or s.request_floor
        or s.token_floor
        or s.learned_requests_per_minute
        or s.learned_tokens_per_minute
    )


def _news(announced: int | None, known: int | None) -> int | None:
    """An announced limit worth writing: present and different from the stored one."""
    return announced if announced and announced != known else None


def _token_correction(attempt: Attempt, usage: Usage | None) -> float:
    """Actual minus estimated tokens of a paid answer. A failed attempt keeps its estimate:
    whether the provider counted it is unknown, and over-counting only slows us a little."""
    reservation = attempt.reservation
    if usage is None or reservation is None or reservation.token_interval is None:
        return 0.0
    return float(usage.input_tokens + usage.output_tokens - attempt.tokens)


def _block_seconds(error: LLMError | None, room: ProviderRoom | None) -> float | None:
    """How long the whole fleet must hold off: a 429's retry-after, or, when the provider
    says nothing is left, the time for one unit to refill."""
    waits = []
    if error is not None and error.http_status == 429 and error.retry_after is not None:
        waits.append(error.retry_after)
    if room is not None:
        for bucket in (room.requests, room.tokens):
            if bucket.remaining == 0 and bucket.reset_seconds is not None and bucket.limit:
                waits.append(bucket.reset_seconds / bucket.limit)
    return max(waits) if waits else None


def _floors(
    reservation: db.Reservation | None, room: ProviderRoom | None
) -> dict[str, float | None]:
    """Hold a bucket back when the provider has less room left than our burst would use."""
    floors: dict[str, float | None] = {"request_floor": None, "token_floor": None}
    if reservation is None or room is None:
        return floors
    interval = reservation.request_interval
    if interval is not None and room.requests.remaining is not None:
        floor = max(interval, BURST_SECONDS) - room.requests.remaining * interval
        floors["request_floor"] = floor if floor > 0 else None
    interval = reservation.token_interval
    if interval is not None and room.tokens.remaining is not None:
        floor = BURST_SECONDS - room.tokens.remaining * interval
        floors["token_floor"] = floor if floor > 0 else None
    return floors


def _increase(reservation: db.Reservation | None) -> float:
    """Additive increase after a success, only while the rate is below the full limit."""
    if reservation is None or reservation.rate_factor >= 1.0:
        return 0.0
    if reservation.request_interval is None:
        return TOKEN_ONLY_INCREASE
    requests_per_minute = 60.0 / (reservation.request_interval * reservation.rate_factor)
    return 1.0 / requests_per_minute
