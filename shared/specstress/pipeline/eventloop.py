"""The event loop every long-running pipeline process runs on.

On Linux, a process stopped (SIGSTOP, a frozen VM, a debugger) and resumed by SIGCONT has its
epoll_wait interrupted (signal(7)), with or without a handler. CPython retries the wait with the
time left, and when its deadline has passed meanwhile it returns no events at all (PEP 475).
asyncio then runs every timer that fell due during the stall before it reads any socket: an
HTTP read timeout fires although the answer has been waiting in the socket for seconds, and the
call is retried and paid twice. This selector looks once more, without waiting, when a wait came
back empty, so what arrived during a stall is read before the timers run.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["StallSafeSelector", "new_event_loop", "run"]

T = TypeVar("T")


class StallSafeSelector(selectors.DefaultSelector):
    """The platform's selector, which does not report "nothing ready" after a stall."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(timeout)
        if ready or timeout is None or timeout <= 0:
            return ready
        # An empty answer to a wait that slept may have been cut short by SIGCONT after its
        # deadline; one poll that does not wait costs a system call per idle timer wake-up.
        return super().select(0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(StallSafeSelector())


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on a loop whose sockets are read before its timers after a stall."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
