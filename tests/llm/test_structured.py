"""Output schemas: one portable JSON Schema, shaped for OpenAI strict mode and for Gemini."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from services.classifier.app import placement_schema
from services.compliance_judge.app import VERDICT_SCHEMA
from services.spectrum_builder.app import SPECTRA_SCHEMA
from specstress.llm.structured import OutputSchema, gemini_schema, strict_schema
from specstress.method.labels import SPECTRUM_POSITIONS as POSITIONS


class Inner(BaseModel):
    """Developer notes that are not for the model."""

    label: Literal["only"]
    score: float = Field(ge=0, le=1)


class Outer(BaseModel):
    name: str = "default"
    inner: Inner
    items: list[Inner] = Field(min_length=2, max_length=2)
    note: str | None = None


def test_of_inlines_references_and_keeps_portable_keywords() -> None:
    schema = OutputSchema.of(Outer).json_schema
    inner = {
        "properties": {
            "label": {"enum": ["only"], "type": "string"},
            "score": {"maximum": 1, "minimum": 0, "type": "number"},
        },
        "required": ["label", "score"],
        "type": "object",
    }
    assert schema == {
        "properties": {
            "name": {"type": "string"},
            "inner": inner,
            "items": {"items": inner, "maxItems": 2, "minItems": 2, "type": "array"},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["inner", "items"],
        "type": "object",
    }
    assert OutputSchema.of(Outer).name == "Outer"


def test_strict_schema_closes_objects_and_requires_everything() -> None:
    strict = strict_schema(OutputSchema.of(Outer).json_schema)
    assert strict["required"] == ["name", "inner", "items", "note"]
    assert strict["additionalProperties"] is False
    assert strict["properties"]["inner"]["additionalProperties"] is False
    assert strict["properties"]["items"]["items"]["additionalProperties"] is False


def test_gemini_schema_uses_its_subset() -> None:
    converted = gemini_schema(strict_schema(OutputSchema.of(Outer).json_schema))
    assert converted["type"] == "OBJECT"
    assert converted["propertyOrdering"] == ["name", "inner", "items", "note"]
    assert "additionalProperties" not in converted
    assert converted["properties"]["note"] == {"type": "STRING", "nullable": True}
    assert converted["properties"]["items"]["items"]["type"] == "OBJECT"


def test_schema_names_and_roots_are_checked() -> None:
    with pytest.raises(ValidationError):
        OutputSchema(name="has space", json_schema={"type": "object"})
    with pytest.raises(ValidationError):
        OutputSchema(name="list", json_schema={"type": "array"})


def test_the_pipeline_schemas_match_their_contracts() -> None:
    verdict = VERDICT_SCHEMA.json_schema
    assert list(verdict["properties"])[:2] == ["reasoning", "decision"]
    assert verdict["properties"]["decision"]["enum"] == ["compliant", "non-compliant", "ambiguous"]
    spectra = SPECTRA_SCHEMA.json_schema["properties"]
    for key in ("value1_bias_spectrum", "value2_bias_spectrum"):
        assert (spectra[key]["minItems"], spectra[key]["maxItems"]) == (7, 7)
        assert spectra[key]["items"]["properties"]["position"]["enum"] == list(POSITIONS)
    placements = placement_schema(["m-1", "m-2"]).json_schema
    assert placements["required"] == ["m-1", "m-2"]
    entry = placements["properties"]["m-1"]
    assert entry["properties"]["value1_position"] == {"maximum": 6, "minimum": 0, "type": "integer"}
    assert set(entry["required"]) == {
        f"value{v}_{f}" for v in (1, 2) for f in ("reasoning", "position", "confidence")
    }
