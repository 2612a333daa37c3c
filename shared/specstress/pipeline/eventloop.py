"""The event loop every long-running pipeline process runs on.

On Linux, a process stopped (SIGSTOP, a frozen VM, a debugger) and resumed by SIGCONT has its
epoll_wait interrupted (signal(7)), with or without a handler. CPython retries the wait with the
time left, and when its deadline has passed meanwhile it returns no events at all (PEP 475).
asyncio then runs every timer that fell due during the stall before it reads any socket: an
HTTP read timeout fires although the answer has been waiting in the socket for seconds, and the
call is retried and paid twice. A wait that ends with some sockets ready, but after a stop at its
return, likewise hides those whose data came during the stop. This selector looks once more,
without waiting, when a wait came back late, so what arrived during a stall is read before the
timers run.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["StallSafeSelector", "new_event_loop", "run"]

T = TypeVar("T")

# A wait this much past its timeout was stalled (epoll ends within about 1 ms; on a busy
# machine a wait may end later, and the extra poll then costs one system call).
LATE_SECONDS = 0.005


class StallSafeSelector(selectors.DefaultSelector):
    """The platform's selector, whose answer after a stall includes what arrived during it."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        start = time.monotonic()
        ready = super().select(timeout)
        if timeout is None or time.monotonic() - start <= max(timeout, 0) + LATE_SECONDS:
            return ready
        # Readiness is level-triggered and nothing was read since: this poll holds all of
        # `ready` and the sockets that became ready while the process was stopped.
        return super().select(0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(StallSafeSelector())


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a loop whose sockets are read before its timers after a stall."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
