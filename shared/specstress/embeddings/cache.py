"""Embedding storage: the per-text cache and the per-scenario vectors that selection reads.

A vector travels as `dim` little-endian float32 values (bytea). Reads go through a server-side
cursor into one preallocated matrix, so loading 411k x 384 vectors costs the matrix (~630 MB)
and one batch of rows, not a Python float per number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import FromClause, Table, and_, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.schema import disagreement, embedding_cache, scenario_embeddings, scenarios

__all__ = [
    "VECTOR_DTYPE",
    "cached_vectors",
    "embedders_of_key",
    "from_bytes",
    "insert_scenario_embeddings",
    "scenarios_missing_embedding",
    "selection_inputs",
    "store_cached_vectors",
    "to_bytes",
]

VECTOR_DTYPE = np.dtype("<f4")
_READ_BATCH = 10_000
# rows per INSERT statement; asyncpg caps a statement at 32767 bound parameters
_WRITE_BATCH = 5_000


def to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def from_bytes(raw: bytes, dim: int) -> npt.NDArray[np.float32]:
    vector = np.frombuffer(raw, dtype=VECTOR_DTYPE)
    if vector.size != dim:
        raise ValueError(f"stored vector has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)


async def _insert_new(engine: AsyncEngine, table: Table, values: list[dict[str, Any]]) -> None:
    """Insert the rows in one transaction, a statement per batch; a row whose key is stored
    already (by another process meanwhile) is left as it is."""
    async with engine.begin() as conn:
        for begin in range(0, len(values), _WRITE_BATCH):
            statement = insert(table).on_conflict_do_nothing()
            await conn.execute(statement, values[begin : begin + _WRITE_BATCH])


async def cached_vectors(
    engine: AsyncEngine, embedder_hash: str, text_hashes: Sequence[str]
) -> dict[str, bytes]:
    """Stored vectors (raw bytes) of the given text hashes for one embedder."""
    found: dict[str, bytes] = {}
    async with engine.connect() as conn:
        for begin in range(0, len(text_hashes), _WRITE_BATCH):
            query = select(embedding_cache.c.text_hash, embedding_cache.c.vector).where(
                embedding_cache.c.embedder_hash == embedder_hash,
                embedding_cache.c.text_hash.in_(text_hashes[begin : begin + _WRITE_BATCH]),
            )
            for text_hash, vector in await conn.execute(query):
                found[text_hash] = bytes(vector)
    return found


async def store_cached_vectors(
    engine: AsyncEngine, embedder_hash: str, dim: int, rows: Sequence[tuple[str, bytes]]
) -> None:
    """Add (text hash, vector) rows; a text another process stored meanwhile is left as it is."""
    values = [
        {"embedder_hash": embedder_hash, "text_hash": text_hash, "dim": dim, "vector": vector}
        for text_hash, vector in rows
    ]
    await _insert_new(engine, embedding_cache, values)


async def scenarios_missing_embedding(
    engine: AsyncEngine, embedding_key: str
) -> list[tuple[str, str]]:
    """(scenario id, query) of every scenario without a vector for this key, in id order."""
    has_vector = exists().where(
        scenario_embeddings.c.embedding_key == embedding_key,
        scenario_embeddings.c.scenario_id == scenarios.c.scenario_id,
    )
    query = (
        select(scenarios.c.scenario_id, scenarios.c.query)
        .where(~has_vector)
        .order_by(scenarios.c.scenario_id)
    )
    async with engine.connect() as conn:
        return [(row.scenario_id, row.query) for row in await conn.execute(query)]


async def embedders_of_key(engine: AsyncEngine, embedding_key: str) -> list[str]:
    """The embedder identities whose vectors are stored under this key (one, or none yet)."""
    query = (
        select(scenario_embeddings.c.embedder_hash)
        .where(scenario_embeddings.c.embedding_key == embedding_key)
        .distinct()
    )
    async with engine.connect() as conn:
        return list((await conn.scalars(query)).all())


async def insert_scenario_embeddings(
    engine: AsyncEngine,
    embedding_key: str,
    embedder_hash: str,
    dim: int,
    rows: Sequence[tuple[str, bytes]],
) -> None:
    """Store (scenario id, vector) rows in one transaction; existing rows are kept."""
    values = [
        {
            "embedding_key": embedding_key,
            "scenario_id": sid,
            "embedder_hash": embedder_hash,
            "dim": dim,
            "vector": vector,
        }
        for sid, vector in rows
    ]
    await _insert_new(engine, scenario_embeddings, values)


async def selection_inputs(
    engine: AsyncEngine, embedding_key: str, dim: int, weighted_by: str | None = None
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    """Scenario ids (ascending), their vectors as one (n, dim) matrix and, when `weighted_by`
    names a model set, each scenario's disagreement D on that set.

    With weights, only scenarios that have both a vector and a D row for the set take part.
    """
    vectors = scenario_embeddings
    condition = and_(vectors.c.embedding_key == embedding_key, vectors.c.dim == dim)
    columns = [vectors.c.scenario_id, vectors.c.vector]
    source: FromClause = vectors
    if weighted_by is not None:
        source = vectors.join(
            disagreement,
            and_(
                disagreement.c.scenario_id == vectors.c.scenario_id,
                disagreement.c.model_set == weighted_by,
            ),
        )
        columns.append(disagreement.c.disagreement)
    async with engine.connect() as conn:
        # one snapshot for the count and the rows
        await conn.execution_options(isolation_level="REPEATABLE READ")
        count = int(
            await conn.scalar(select(func.count()).select_from(source).where(condition)) or 0
        )
        matrix = np.empty((count, dim), np.float32)
        weights = np.empty(count, np.float32) if weighted_by is not None else None
        ids: list[str] = []
        query = (
            select(*columns).select_from(source).where(condition).order_by(vectors.c.scenario_id)
        )
        result = await conn.stream(query.execution_options(yield_per=_READ_BATCH))
        async for batch in result.partitions():
            for row in batch:
                matrix[len(ids)] = from_bytes(row[1], dim)
                if weights is not None:
                    weights[len(ids)] = row[2]
                ids.append(row[0])
    return ids, matrix, weights
