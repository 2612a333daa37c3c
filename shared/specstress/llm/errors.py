"""The one exception the gateway raises, classed by what the caller should do about it."""

from __future__ import annotations

from typing import Literal

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
