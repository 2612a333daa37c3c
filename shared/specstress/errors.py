"""Errors that carry a message meant for the person running specstress."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["BadModelOutput", "InputError", "RetryLater", "first_problem"]


class InputError(Exception):
    """Bad user input (config, taxonomy, spec, CLI arguments): one line naming the problem."""


class BadModelOutput(Exception):
    """A model answered, but not in the contract the prompt asked for."""


class RetryLater(Exception):
    """The work is sound but cannot be done now: put the message back for `delay` seconds
    without holding a worker. Not a failure, so it does not count towards dead-lettering.

    `cause` is a short fixed word for metrics (e.g. "rate_limit", "provider_paused", "budget").
    """

    def __init__(self, delay: float, reason: str, *, cause: str = "wait") -> None:
        super().__init__(reason)
        self.delay = delay
        self.cause = cause


def first_problem(error: ValidationError, whole: str = "") -> str:
    """`where: what` of the first problem pydantic found; `whole` names the place when the
    problem is the value as a whole (its location is empty)."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    return f"{where}: {first['msg']}"
