"""Token counts and prompt-prefix caching as the simulator reports them.

Tokens are estimated as one per four characters. A prompt is a sequence of segments (a message
or a content block, with its role); a prefix that ends at a segment boundary, is at least
`MIN_CACHED_TOKENS` long and was seen in the same scope (a protocol and model) within
`TTL_SECONDS` is served from the cache. OpenAI and Gemini cache every such prefix on their own; Anthropic only prefixes that end
at a block marked with `cache_control`, and it reports the first sighting as a cache write.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

MIN_CACHED_TOKENS = 1024
TTL_SECONDS = 300.0
# bounds memory when a long run keeps sending new prefixes within the time to live
MAX_ENTRIES = 100_000


def tokens(chars: int) -> int:
    return math.ceil(chars / 4)


@dataclass(frozen=True)
class Segment:
    role: str
    text: str
    # Anthropic: this block carries cache_control
    breakpoint: bool = False


@dataclass(frozen=True)
class CacheUse:
    prompt_tokens: int
    # read from the cache
    cached_tokens: int = 0
    # written to the cache (Anthropic reports these apart)
    written_tokens: int = 0


@dataclass(frozen=True)
class _Prefix:
    key: str
    tokens: int
    breakpoint: bool


class PrefixCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # prefix key -> when it was last used; oldest first
        self._seen: OrderedDict[str, float] = OrderedDict()

    def automatic(self, scope: str, segments: Sequence[Segment]) -> CacheUse:
        """OpenAI and Gemini: the longest prefix seen lately is cached; every prefix is kept."""
        prefixes, total = _prefixes(scope, segments)
        eligible = [p for p in prefixes if p.tokens >= MIN_CACHED_TOKENS]
        cached = max((p.tokens for p in eligible if self._fresh(p.key)), default=0)
        self._remember(p.key for p in eligible)
        return CacheUse(prompt_tokens=total, cached_tokens=cached)

    def explicit(self, scope: str, segments: Sequence[Segment]) -> CacheUse:
        """Anthropic: only prefixes ending at a breakpoint count; a new one is a cache write."""
        prefixes, total = _prefixes(scope, segments)
        marked = [p for p in prefixes if p.breakpoint and p.tokens >= MIN_CACHED_TOKENS]
        cached = max((p.tokens for p in marked if self._fresh(p.key)), default=0)
        longest = max((p.tokens for p in marked), default=0)
        self._remember(p.key for p in marked)
        return CacheUse(
            prompt_tokens=total, cached_tokens=cached, written_tokens=max(0, longest - cached)
        )

    def _fresh(self, key: str) -> bool:
        seen = self._seen.get(key)
        return seen is not None and self._clock() - seen <= TTL_SECONDS

    def _remember(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            self._seen[key] = now
            self._seen.move_to_end(key)
        while self._seen and (
            len(self._seen) > MAX_ENTRIES or now - next(iter(self._seen.values())) > TTL_SECONDS
        ):
            self._seen.popitem(last=False)


def _prefixes(scope: str, segments: Sequence[Segment]) -> tuple[list[_Prefix], int]:
    """Every prefix ending at a segment boundary, keyed by a hash chain, and the prompt's tokens."""
    chain = hashlib.sha256(scope.encode())
    chars = 0
    prefixes: list[_Prefix] = []
    for segment in segments:
        chain.update(f"\x1e{segment.role}\x1f{segment.text}".encode())
        chars += len(segment.text)
        prefixes.append(_Prefix(chain.copy().hexdigest(), tokens(chars), segment.breakpoint))
    return prefixes, tokens(chars)
