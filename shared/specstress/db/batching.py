"""Many concurrent callers' statements as one round trip.

Handlers run concurrently, and each used to send its own lookup or insert; on a machine whose
cores are shared by client and server, every round trip is also a pair of context switches. A
`Coalescer` gathers the items that concurrent tasks hand it while its previous batch is in
flight (or, when idle, within one event-loop tick), runs up to `max_batch` of them with one call
of its batch function (one statement over id arrays, one multi-row insert) and gives each
caller its own result. Batches run one after another, in the order their items came.

A batch that fails as a whole is run again member by member, so one caller's bad row fails only
that caller; when the failure is a lost connection every member gets it at once instead, since
running them one by one would only fail them one by one, slowly.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.engine import database_unreachable

__all__ = ["Coalescer", "PerEngine"]

Item = TypeVar("Item")
Result = TypeVar("Result")
Made = TypeVar("Made")

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 500


@dataclass(frozen=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class Coalescer(Generic[Item, Result]):
    """Runs `run_batch(items)`, which returns one result per item in order, for many callers.

    `discard(item, result)` is told of a result whose caller stopped waiting after its batch had
    started (a lock taken for a cancelled caller must be given back)."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        name: str,
        max_batch: int = DEFAULT_MAX_BATCH,
        discard: Callable[[Item, Result], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.name = name
        self._max_batch = max_batch
        self._discard = discard
        self._pending: list[_Waiting[Item, Result]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """The item's own result, or its own exception."""
        return await self._enqueue(item)

    def post(self, item: Item) -> None:
        """Queue an item whose result nobody waits for; a failure is logged."""
        self._enqueue(item).add_done_callback(self._log_failure)

    async def drained(self) -> None:
        """Returns once everything queued so far has run."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.wait({self._drainer})

    def _enqueue(self, item: Item) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        drainer = self._drainer
        if drainer is not None and drainer.get_loop() is not loop:
            # the loop that was draining has ended (one loop per test): its callers are gone
            self._pending.clear()
            drainer = None
        self._pending.append(_Waiting(item, future))
        if drainer is None or drainer.done():
            self._drainer = loop.create_task(self._drain(), name=f"coalescer {self.name}")
        return future

    async def _drain(self) -> None:
        # one tick: the tasks woken together with the first caller add their items too
        await asyncio.sleep(0)
        while self._pending:
            taken = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            # callers that stopped waiting before their batch started need nothing run
            await self._run([w for w in taken if not w.future.done()])

    async def _run(self, batch: list[_Waiting[Item, Result]]) -> None:
        if not batch:
            return
        try:
            results = await self._run_batch([w.item for w in batch])
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as error:
            if len(batch) == 1 or database_unreachable(error):
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(error)
                return
            for waiting in batch:
                if not waiting.future.done():
                    await self._run([waiting])
            return
        if len(results) != len(batch):
            miscount = RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(miscount)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)
            elif self._discard is not None:
                self._discard(waiting.item, result)

    def _log_failure(self, future: asyncio.Future[Result]) -> None:
        if not future.cancelled() and (error := future.exception()) is not None:
            log.warning("%s: queued item failed: %s", self.name, error)


class PerEngine(Generic[Made]):
    """One `make(engine)` per engine, made on first use and dropped with the engine (the
    coalescers of module-level query functions belong with the engine they run on)."""

    def __init__(self, make: Callable[[AsyncEngine], Made]) -> None:
        self._make = make
        self._made: weakref.WeakKeyDictionary[AsyncEngine, Made] = weakref.WeakKeyDictionary()

    def __call__(self, engine: AsyncEngine) -> Made:
        made = self._made.get(engine)
        if made is None:
            # what is made sees the engine through a weak proxy: a strong reference from the
            # value would keep the key, and the engine, alive for good
            proxy = cast(AsyncEngine, weakref.proxy(engine))
            made = self._made[engine] = self._make(proxy)
        return made
