"""Distinctive values mapped to level-2 taxonomy categories (method 2.13, Figures 10 and 11).

A mapping is a fact of (value text, taxonomy version, embedding key): stored once with ON
CONFLICT DO NOTHING, so running the mapping again only adds the texts that are new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.schema import distinctive_values, value_categories

__all__ = ["ValueCategory", "store_value_categories", "unmapped_values"]

_WRITE_BATCH = 5_000


@dataclass(frozen=True)
class ValueCategory:
    value_hash: str
    value: str
    category_id: str
    category: str
    similarity: float


async def unmapped_values(
    engine: AsyncEngine, taxonomy_version: str, embedding_key: str
) -> list[str]:
    """Distinct distinctive-value texts with no category yet under this version and key."""
    # the same digest as `specstress.embeddings.text_hash`, computed where the texts are
    digest = func.encode(func.sha256(func.convert_to(distinctive_values.c.value, "UTF8")), "hex")
    mapped = and_(
        value_categories.c.value_hash == digest,
        value_categories.c.taxonomy_version == taxonomy_version,
        value_categories.c.embedding_key == embedding_key,
    )
    query = (
        select(distinctive_values.c.value)
        .distinct()
        .where(~select(value_categories.c.value_hash).where(mapped).exists())
        .order_by(distinctive_values.c.value)
    )
    async with engine.connect() as conn:
        return list((await conn.scalars(query)).all())


async def store_value_categories(
    engine: AsyncEngine,
    taxonomy_version: str,
    embedding_key: str,
    mapped: Sequence[ValueCategory],
) -> None:
    """Store the mappings in one transaction; a text already mapped keeps its first row."""
    rows = [
        {
            "value_hash": m.value_hash,
            "taxonomy_version": taxonomy_version,
            "embedding_key": embedding_key,
            "value": m.value,
            "category_id": m.category_id,
            "category": m.category,
            "similarity": m.similarity,
        }
        for m in mapped
    ]
    async with engine.begin() as conn:
        for begin in range(0, len(rows), _WRITE_BATCH):
            await conn.execute(
                insert(value_categories).on_conflict_do_nothing(),
                rows[begin : begin + _WRITE_BATCH],
            )
