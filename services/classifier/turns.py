"""One handler at a time per scenario, within this process.

A scenario's events come in bursts: its six answers within moments of each other, the flags of
two model sets, the classifications' own event racing a flag. Run side by side, the handlers
would each read the same state, find the same work missing and each ask the gateway for it; the
ledger makes the copies free of charge but not of CPU (a request hash, a ledger lookup and a
claim each). Taken in turn, each finds what the one before it stored. Other processes are not
held back: between replicas the ledger and the claims still decide who pays.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

from specstress.pipeline.stage import Stage

T = TypeVar("T")
# answers remembered as announced; the memo need only outlast a burst of sibling events
ANNOUNCED_LIMIT = 50_000


class Turns:
    """A lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class Announced:
    """Ids of answers this process classified and announced (ClassificationsCreated published),
    oldest forgotten first."""

    def __init__(self, limit: int = ANNOUNCED_LIMIT) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._ids

    def add(self, response_ids: Iterable[str]) -> None:
        self._ids.update(dict.fromkeys(response_ids))
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)


def _kept(stage: Stage, name: str, make: Callable[[], T]) -> T:
    # on the Stage, not in the module: a test's own Stage starts afresh
    if name not in stage.cache:
        stage.cache[name] = make()
    found: T = stage.cache[name]
    return found


def turns(stage: Stage, name: str) -> Turns:
    """The stage's locks of one kind."""
    return _kept(stage, name, Turns)


def announced(stage: Stage) -> Announced:
    """The answers this stage announced."""
    return _kept(stage, "announced answers", Announced)
