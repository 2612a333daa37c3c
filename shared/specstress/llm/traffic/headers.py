"""What a provider's rate-limit headers say about the room left, in one shape for every protocol.

OpenAI (and most compatible servers) send `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
with resets as Go durations ("6m0s", "1.5s", "120ms"); Anthropic sends
`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` with
resets as RFC 3339 instants. Limits are per minute in both.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["ProviderRoom", "Room", "parse_duration", "parse_instant", "parse_room"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# Anthropic's `tokens` family is the most restrictive token limit in effect; without it, the
# input and output families are read and the one closer to running out is taken.
_ANTHROPIC_SPLIT_TOKEN_FAMILIES = ("input-tokens", "output-tokens")


@dataclass(frozen=True)
class Room:
    """One limit as the provider last reported it: per-minute `limit`, `remaining` now, and
    `reset_seconds` until the bucket is full again. Any part may be missing."""

    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None

    @property
    def empty(self) -> bool:
        return self.limit is None and self.remaining is None and self.reset_seconds is None


@dataclass(frozen=True)
class ProviderRoom:
    requests: Room
    tokens: Room

    @property
    def empty(self) -> bool:
        return self.requests.empty and self.tokens.empty


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration ("6m0s", "1h2m3.5s", "120ms") or a bare number of
    seconds; None when the text is neither."""
    value = text.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(value) else None


def parse_instant(text: str, now: float) -> float | None:
    """Seconds from `now` (epoch) until an RFC 3339 instant; never negative."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return max(0, int(float(value)))
    except ValueError:
        return None


def _openai_room(headers: Mapping[str, str], kind: str) -> Room:
    reset = headers.get(f"x-ratelimit-reset-{kind}")
    return Room(
        limit=_int(headers, f"x-ratelimit-limit-{kind}"),
        remaining=_int(headers, f"x-ratelimit-remaining-{kind}"),
        reset_seconds=None if reset is None else parse_duration(reset),
    )


def _anthropic_room(headers: Mapping[str, str], family: str, now: float) -> Room:
    prefix = f"anthropic-ratelimit-{family}"
    reset = headers.get(f"{prefix}-reset")
    return Room(
        limit=_int(headers, f"{prefix}-limit"),
        remaining=_int(headers, f"{prefix}-remaining"),
        reset_seconds=None if reset is None else parse_instant(reset, now),
    )


def _tightest(rooms: list[Room]) -> Room:
    """The room that runs out first: the one with the smallest share left."""
    known = [r for r in rooms if not r.empty]
    if not known:
        return Room()

    def share_left(room: Room) -> float:
        if room.remaining is None or not room.limit:
            return 1.0
        return room.remaining / room.limit

    return min(known, key=share_left)


def parse_room(headers: Mapping[str, str], now: float | None = None) -> ProviderRoom:
    """The request and token room in `headers` (case-insensitive mapping, e.g. httpx's)."""
    moment = time.time() if now is None else now
    requests = _openai_room(headers, "requests")
    tokens = _openai_room(headers, "tokens")
    if requests.empty:
        requests = _anthropic_room(headers, "requests", moment)
    if tokens.empty:
        tokens = _anthropic_room(headers, "tokens", moment)
    if tokens.empty:
        tokens = _tightest(
            [_anthropic_room(headers, f, moment) for f in _ANTHROPIC_SPLIT_TOKEN_FAMILIES]
        )
    return ProviderRoom(requests=requests, tokens=tokens)
