"""RedactSecrets masks configured keys wherever a log record can carry them."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from specstress.config import ModelConfig
from specstress.llm import RedactSecrets

KEY = "sk-canary-5f0c2d7e9a41"


def _capture(secrets: RedactSecrets) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
    handler.addFilter(secrets)
    logger = logging.getLogger(f"test.redact.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, stream


def test_message_args_extras_and_tracebacks_are_masked() -> None:
    logger, stream = _capture(RedactSecrets([SecretStr(KEY)]))
    logger.warning("sent Bearer %s to %s", KEY, "host", extra={"detail": f"key={KEY}"})
    logger.warning(f"inline {KEY}", extra={"detail": "-"})
    try:
        raise RuntimeError(f"echoed {KEY}")
    except RuntimeError:
        logger.exception("failed", extra={"detail": "-"})
    output = stream.getvalue()
    assert KEY not in output
    assert output.count("[REDACTED]") == 4
    assert "sent Bearer [REDACTED] to host key=[REDACTED]" in output
    assert "RuntimeError: echoed [REDACTED]" in output


def test_longer_secret_is_masked_whole_and_empty_ones_ignored() -> None:
    secrets = RedactSecrets(["abc123", "abc123-long", ""])
    assert secrets.redact("x abc123-long y abc123") == "x [REDACTED] y [REDACTED]"
    assert RedactSecrets([""]).redact("unchanged") == "unchanged"


def test_for_models_reads_the_configured_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDACT_TEST_KEY", KEY)
    monkeypatch.delenv("REDACT_UNSET_KEY", raising=False)
    models = [
        ModelConfig(key=k, family="f", base_url="http://x", model_id="m", api_key_env=env)
        for k, env in (("a", "REDACT_TEST_KEY"), ("b", "REDACT_UNSET_KEY"), ("c", None))
    ]
    assert RedactSecrets.for_models(models).redact(f"key {KEY}") == "key [REDACTED]"
