"""Model entries and a conversation for tests that build or key provider requests without
calling a provider."""

from __future__ import annotations

from typing import Any

from specstress.config import ModelConfig
from specstress.llm import ChatMessage

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


def conversation(answer: str) -> list[ChatMessage]:
    """A system prompt, a cached spec, a question, the assistant's `answer` and a follow-up."""
    return [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="spec", cache=True),
        ChatMessage(role="user", content="question"),
        ChatMessage(role="assistant", content=answer),
        ChatMessage(role="user", content="again"),
    ]
