"""Model entries for tests that build or key provider requests without calling a provider."""

from __future__ import annotations

from typing import Any

from specstress.config import ModelConfig

# One plausible entry per protocol; each test lays over it only what it is about.
PROTOCOL_FIELDS: dict[str, dict[str, Any]] = {
    "openai": {
        "key": "alpha",
        "family": "fam",
        "base_url": "https://api.example.test/v1",
        "model_id": "model-1",
        "api_key_env": "ALPHA_KEY",
    },
    "anthropic": {
        "key": "claude",
        "family": "anthropic",
        "base_url": "https://api.anthropic.test",
        "model_id": "claude-test",
        "api_key_env": "ANTHROPIC_KEY",
    },
    "gemini": {
        "key": "gemini",
        "family": "google",
        "base_url": "https://generativelanguage.googleapis.test",
        "model_id": "gemini-test",
        "api_key_env": "GEMINI_KEY",
    },
}


def model_config(protocol: str = "openai", **changes: Any) -> ModelConfig:
    """The protocol's test entry with `changes` laid over it."""
    fields = {**PROTOCOL_FIELDS[protocol], "protocol": protocol, **changes}
    return ModelConfig.model_validate(fields)
