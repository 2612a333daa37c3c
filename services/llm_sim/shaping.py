"""How the simulator dresses an answer for a request: JSON of a requested schema, and the
reasoning a thinking model shows. Every protocol module uses these, so the same request gets
the same content whichever wire format asked for it."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from services.llm_sim.answers import Message, prompt_kind


def json_answer(content: str, schema: dict[str, Any] | None) -> Any:
    """The answer as a JSON value for a structured-output request.

    Pipeline prompts are already answered with JSON in their contract, which is kept as it is:
    planted format flaws stay, as with providers that do not enforce every schema keyword, so
    the pipeline's own validation is still exercised. Any other answer is fitted into the
    schema, its text going to the first free-text field.
    """
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    if schema is None:
        return {"answer": content}
    return _Instance(content).build(schema, "answer")


class _Instance:
    """A deterministic instance of a JSON Schema (or of Gemini's upper-case variant)."""

    def __init__(self, text: str) -> None:
        self._text: str | None = text

    def build(self, schema: Any, name: str) -> Any:
        if not isinstance(schema, dict):
            return None
        enum = schema.get("enum")
        branches = schema.get("anyOf") or schema.get("oneOf")
        kind = _type_of(schema)
        if isinstance(enum, list) and enum:
            return _typed(enum[0], kind)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if _type_of(b) != "null"] or branches
            return self.build(usable[0], name)
        if kind == "object" or (kind is None and "properties" in schema):
            properties = schema.get("properties") or {}
            return {prop: self.build(sub, prop) for prop, sub in properties.items()}
        if kind == "array":
            count = max(1, int(schema.get("minItems", 1)))
            return [self.build(schema.get("items", {}), name) for _ in range(count)]
        if kind == "integer":
            return math.ceil(_lower_bound(schema))
        if kind == "number":
            return float(_lower_bound(schema))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        if self._text is not None:
            text, self._text = self._text, None
            return text
        return f"simulated {name}"


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    return str(kind).lower() if kind is not None else None


def _typed(value: Any, kind: str | None) -> Any:
    # Gemini lists integer enums as strings
    if kind == "integer" and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def _lower_bound(schema: dict[str, Any]) -> float:
    if isinstance(schema.get("minimum"), int | float):
        return float(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        return float(schema["exclusiveMinimum"]) + 1
    return 0.0


def thinking_text(model_id: str, messages: Sequence[Message]) -> str:
    """The reasoning a thinking model shows before its answer."""
    kind = prompt_kind(messages)
    return (
        f"Simulated reasoning of {model_id}: this is a {kind} prompt, so the answer follows "
        "the format that prompt asks for."
    )


def thinking_signature(thinking: str) -> str:
    """An opaque, stable stand-in for the signature Anthropic puts on a thinking block."""
    return base64.b64encode(hashlib.sha256(f"llm-sim:{thinking}".encode()).digest()).decode()
