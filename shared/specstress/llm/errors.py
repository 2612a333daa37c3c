"""The one exception the gateway raises, classed by what the caller should do about it."""

from __future__ import annotations

from typing import Literal

from specstress.errors import RetryLater

__all__ = ["BatchPending", "BudgetExhausted", "ErrorClass", "LLMDeferred", "LLMError"]

# retryable: try again later (the gateway already retried); terminal_quota: stop and alert, the
# account is out of money or daily quota; terminal_client: the request itself is wrong;
# bad_output: the model kept answering outside the required format.
ErrorClass = Literal["retryable", "terminal_quota", "terminal_client", "bad_output"]


class LLMError(Exception):
    """str() is the provider's message (or ours when there is none); it never holds the API key."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class: ErrorClass = error_class
        self.http_status = http_status
        # seconds the provider asked us to wait, so a consumer can nak(delay=...) for that long
        self.retry_after = retry_after


class LLMDeferred(LLMError, RetryLater):
    """A call that cannot be made now: the provider asked for a wait longer than the gateway
    sleeps through, the fleet's rate-limit queue is longer than a worker should wait, or the
    provider is paused for quota. The message comes back after `delay` seconds."""

    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        delay: float,
        cause: str,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        # both bases chain to Exception; set their fields here rather than run their __init__s
        Exception.__init__(self, message)
        self.error_class = error_class
        self.http_status = http_status
        self.retry_after = retry_after
        self.delay = delay
        self.cause = cause


class BudgetExhausted(RetryLater):
    """The run's budget is spent: no paid call starts until it is raised (cached answers are
    still served). The message comes back after `delay` seconds."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(delay, reason, cause="budget")


class BatchPending(RetryLater):
    """The answer is coming through a batch job (the request is queued or already sent): the
    message comes back after `delay` seconds and finds it in the ledger, or is called online
    if the batch could not answer it."""

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(delay, reason, cause="batch")
