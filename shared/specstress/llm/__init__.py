"""The LLM gateway: one interface to every provider, with retries, limits and a ledger."""

from specstress.llm.errors import ErrorClass, LLMError
from specstress.llm.gateway import Gateway, request_hash
from specstress.llm.messages import ChatMessage, ModelOutput, Usage
from specstress.llm.redact import RedactSecrets

__all__ = [
    "ChatMessage",
    "ErrorClass",
    "Gateway",
    "LLMError",
    "ModelOutput",
    "RedactSecrets",
    "Usage",
    "request_hash",
]
