"""JSON-schema output: one protocol-neutral description of the answer's shape.

Callers describe the answer once (usually as a pydantic model); each adapter turns it into its
protocol's native mechanism: OpenAI `response_format` json_schema, an Anthropic forced tool
call, Gemini `responseSchema`. The schema only steers the model: callers still validate every
answer with pydantic, because not every provider enforces every keyword.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["OutputSchema", "gemini_schema", "portable_schema", "strict_schema"]

# Keywords every supported protocol understands (Gemini after `gemini_schema`); anything else
# (titles, defaults, formats) is dropped rather than risk a provider rejecting the request.
# Descriptions go too: pydantic fills them from docstrings written for developers, and the
# prompt already tells the model what each field means.
_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "items",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "anyOf",
        "additionalProperties",
    }
)


class OutputSchema(BaseModel):
    """The required shape of an answer: a JSON Schema with an object at its root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # OpenAI and Anthropic both restrict the name to this alphabet
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    json_schema: dict[str, Any]

    @model_validator(mode="after")
    def _object_root(self) -> OutputSchema:
        if self.json_schema.get("type") != "object":
            raise ValueError("an output schema must describe a JSON object")
        return self

    @classmethod
    def of(cls, model: type[BaseModel], name: str | None = None) -> OutputSchema:
        """The schema of a pydantic model, with references inlined and only portable keywords."""
        return cls(name=name or model.__name__, json_schema=_portable_schema_of(model))

    @classmethod
    def keyed(cls, name: str, keys: Sequence[str], entry: dict[str, Any]) -> OutputSchema:
        """An object with one `entry`-shaped value under each of `keys`, every key required
        and no other (an answer about several models, keyed by model key)."""
        return cls(
            name=name,
            json_schema={
                "type": "object",
                "properties": dict.fromkeys(keys, entry),
                "required": list(keys),
                "additionalProperties": False,
            },
        )


@functools.cache
def _portable_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    # built once per model: stages ask for the same schema on every call, and pydantic
    # rebuilds it from scratch each time (shared, so read only: every user above builds anew)
    return portable_schema(model.model_json_schema())


def portable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with `$ref`s inlined, `const` as a one-value `enum` and unknown keywords gone."""
    definitions = schema.get("$defs", {})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref")
        if isinstance(reference, str):
            name = reference.rsplit("/", 1)[-1]
            if name in seen or name not in definitions:
                raise ValueError(f"output schema: cannot inline reference {reference!r}")
            return walk(definitions[name], (*seen, name))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "const":
                out["enum"] = [value]
            elif key not in _KEYWORDS:
                continue
            elif key == "properties":
                out[key] = {prop: walk(sub, seen) for prop, sub in value.items()}
            elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
                out[key] = walk(value, seen)
            elif key == "anyOf":
                out[key] = [walk(sub, seen) for sub in value]
            else:
                out[key] = copy.deepcopy(value)
        return out

    result: dict[str, Any] = walk(schema, ())
    return result


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI strict mode: every object closed and every property required."""

    def walk(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "properties":
                out[key] = {prop: walk(sub) for prop, sub in value.items()}
                out["required"] = list(value)
            elif key == "items":
                out[key] = walk(value)
            elif key == "anyOf":
                out[key] = [walk(sub) for sub in value]
            elif key != "required":
                out[key] = value
        if out.get("type") == "object":
            out["additionalProperties"] = False
        return out

    result: dict[str, Any] = walk(schema)
    return result


def gemini_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Gemini's OpenAPI subset: upper-case types, `nullable` instead of a null branch, no
    `additionalProperties` or exclusive bounds, and an explicit property order (Gemini sorts
    properties alphabetically otherwise, which would put a verdict before its reasoning)."""

    def walk(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        branches = node.get("anyOf")
        if isinstance(branches, list):
            kept = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            if len(kept) == 1 and len(kept) < len(branches):
                merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **kept[0]}
                return {**walk(merged), "nullable": True}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("additionalProperties", "exclusiveMinimum", "exclusiveMaximum"):
                continue
            if key == "type" and isinstance(value, str):
                out[key] = value.upper()
            elif key == "properties":
                out[key] = {prop: walk(sub) for prop, sub in value.items()}
                out["propertyOrdering"] = list(value)
            elif key == "items":
                out[key] = walk(value)
            elif key == "anyOf":
                out[key] = [walk(sub) for sub in value]
            else:
                out[key] = value
        return out

    result: dict[str, Any] = walk(schema)
    return result
