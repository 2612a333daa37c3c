"""Who pays for a request: one caller in a process, one process in the fleet.

Identical calls must not be bought twice. Within a process, a second caller of a hash waits for
the first to finish. Across processes, a Postgres advisory lock on the hash is held for the
length of the call; the locks of all of a process's calls live in one session, and the takes
and releases that concurrent calls ask for reach it as one statement (`pg_try_advisory_lock` and
`pg_advisory_unlock` over an array of keys). A hash that another process holds is then waited
for on a connection of its own with a blocking lock (`CallLocks`): that takes two processes
working on the same request at the same moment, which is rare.

Session locks are re-entrant, which is why callers in one process must wait for each other
here; it also lets a release go out without being waited for: a hash released and taken again
by the same session is held once, in whichever order the two arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.batching import Coalescer
from specstress.db.direct import DirectConnection
from specstress.ids import advisory_lock_key
from specstress.llm.ledger import CallLocks

__all__ = ["CallClaims"]

_TAKE_OR_RELEASE = """
SELECT CASE WHEN take THEN pg_try_advisory_lock(key) ELSE pg_advisory_unlock(key) END AS done
FROM unnest(CAST($1 AS bigint[]), CAST($2 AS boolean[])) WITH ORDINALITY
    AS steps(key, take, position)
ORDER BY position
"""


@dataclass(frozen=True)
class _Step:
    key: int
    take: bool


class CallClaims:
    """Advisory locks on request hashes for one process (see the module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        # the session that holds the locks is not the service's pool's to hand out; in
        # autocommit, since a session lock needs no transaction and none should stay open
        # while calls run
        self._session = DirectConnection(engine, end_on_refusal=True)
        self._steps = Coalescer(
            self._run_steps, name="call claims", discard=self._give_back_abandoned
        )
        self._contended = CallLocks(engine)
        self._holders: dict[str, asyncio.Future[None]] = {}

    @asynccontextmanager
    async def hold(self, request_hash: str) -> AsyncIterator[None]:
        """Held by this caller alone in the fleet until the block ends."""
        while (holder := self._holders.get(request_hash)) is not None:
            await asyncio.wait({holder})
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._holders[request_hash] = ended
        try:
            key = advisory_lock_key(request_hash)
            if await self._steps.submit(_Step(key, take=True)):
                try:
                    yield
                finally:
                    self._steps.post(_Step(key, take=False))
            else:
                async with self._contended.hold(request_hash):
                    yield
        finally:
            del self._holders[request_hash]
            ended.set_result(None)

    async def aclose(self) -> None:
        await self._steps.drained()
        await self._session.aclose()
        await self._contended.aclose()

    async def _run_steps(self, steps: Sequence[_Step]) -> list[bool]:
        # After a failure (the statement refused or cut short, the connection lost) what the
        # session still holds is unknown, so the session is ended, which gives back every lock
        # it held; calls under way carry on, and the ledger's unique answer row is what
        # keeps a second payment out.
        async with self._session.held() as session:
            rows = await session.fetch(
                _TAKE_OR_RELEASE, [s.key for s in steps], [s.take for s in steps]
            )
        return [bool(row["done"]) for row in rows]

    def _give_back_abandoned(self, step: _Step, done: bool) -> None:
        # a lock taken for a caller that stopped waiting would otherwise be held forever
        if step.take and done:
            self._steps.post(_Step(step.key, take=False))
