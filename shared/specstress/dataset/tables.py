"""Our own lossless dump: every table a study needs, one file per table, in JSON Lines or CSV.

Values keep their types through text: timestamps as ISO 8601, bytes as base64, exact decimals
as strings, JSONB as JSON (in CSV, as JSON text). In CSV a null is the two characters `\\N`,
and a text that starts with a backslash gets one more in front, so null and text never meet.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    Table,
)
from sqlalchemy.dialects.postgresql import JSONB

from specstress.db import schema
from specstress.errors import InputError

__all__ = [
    "DERIVED_TABLES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TABLES",
    "DatasetError",
    "decode_csv",
    "decode_json",
    "encode_csv",
    "encode_json",
    "file_columns",
]

FORMAT_NAME = "specstress-dataset"
FORMAT_VERSION = 1
CSV_NULL = "\\N"

# In foreign-key order, so an import can insert them one after the other.
TABLES: tuple[Table, ...] = (
    schema.values,
    schema.value_pairs,
    schema.scenarios,
    schema.scenario_drops,
    schema.models,
    schema.responses,
    schema.spectra,
    schema.classifications,
    schema.disagreement,
    schema.verdicts,
    schema.verdict_citations,
    schema.topic_labels,
    schema.refusal_types,
    schema.distinctive_values,
    schema.value_categories,
    schema.llm_calls,
    schema.scenario_embeddings,
    schema.selections,
    schema.selection_members,
)
# written for readers, recomputed on import from the classifications and the config
DERIVED_TABLES = frozenset({"disagreement"})


class DatasetError(InputError):
    """A file that cannot be imported or exported: one message naming the file, the column or
    the row."""


def file_columns(table: Table) -> list[Column[Any]]:
    """The columns a dump carries: all but an identity that the database assigns."""
    return [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]


def encode_json(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, DateTime):
        return value.isoformat()
    if isinstance(kind, LargeBinary):
        return base64.b64encode(value).decode()
    if isinstance(kind, Numeric) and not isinstance(kind, Float):
        return str(value)
    return value


def encode_csv(column: Column[Any], value: Any) -> str:
    encoded = encode_json(column, value)
    if encoded is None:
        return CSV_NULL
    if isinstance(column.type, JSONB):
        return json.dumps(encoded, ensure_ascii=False)
    if isinstance(encoded, bool):
        return "true" if encoded else "false"
    text = str(encoded)
    return "\\" + text if text.startswith("\\") else text


def decode_json(column: Column[Any], value: Any) -> Any:
    """A JSON value back to what asyncpg takes for the column; ValueError when it does not fit."""
    if value is None:
        return None
    kind = column.type
    if isinstance(kind, JSONB):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(kind, DateTime):
        return datetime.fromisoformat(value)
    if isinstance(kind, LargeBinary):
        return base64.b64decode(value, validate=True)
    if isinstance(kind, Boolean):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if isinstance(kind, (Integer, BigInteger)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if isinstance(kind, Float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if isinstance(kind, Numeric):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def decode_csv(column: Column[Any], text: str) -> Any:
    if text == CSV_NULL:
        return None
    kind = column.type
    if isinstance(kind, JSONB):
        return decode_json(column, json.loads(text))
    if isinstance(kind, Boolean):
        if text not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text == "true"
    if isinstance(kind, (Integer, BigInteger)):
        return int(text)
    if isinstance(kind, Float):
        return float(text)
    if isinstance(kind, (DateTime, LargeBinary, Numeric)):
        return decode_json(column, text)
    return text[1:] if text.startswith("\\") else text
