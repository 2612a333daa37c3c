"""A logging filter that masks API keys, for every service to install on its log handlers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from pydantic import SecretStr

from specstress.config import ModelConfig

__all__ = ["MASK", "RedactSecrets"]

MASK = "[REDACTED]"


class RedactSecrets(logging.Filter):
    """Replaces each secret value in a record's message, traceback, stack and extra fields.

    Install it on handlers, not loggers: a logger's filters do not see records that propagate
    up from its child loggers.
    """

    def __init__(self, secrets: Iterable[SecretStr | str]) -> None:
        super().__init__()
        values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets}
        # longest first, so a key that contains another key is masked whole
        self._secrets = sorted((v for v in values if v), key=len, reverse=True)

    @classmethod
    def for_models(cls, models: Iterable[ModelConfig]) -> RedactSecrets:
        """A filter for the keys of every model whose key variable is set right now."""
        return cls(
            os.environ[m.api_key_env]
            for m in models
            if m.api_key_env is not None and m.api_key_env in os.environ
        )

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        # Render the message first: a key can arrive through the %-args as well as the format.
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            # formatters reuse exc_text when it is set, so the redacted traceback is what prints
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg":
                setattr(record, name, self.redact(value))
        return True
