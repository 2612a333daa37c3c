"""The cached embedder every caller uses, whatever the provider behind it."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import EmbeddingConfig
from specstress.embeddings.cache import cached_vectors, from_bytes, store_cached_vectors, to_bytes
from specstress.embeddings.http import HttpEmbeddings
from specstress.embeddings.local import LocalEmbeddings
from specstress.llm.errors import LLMError

__all__ = [
    "Embedder",
    "Matrix",
    "Provider",
    "embedder_hash",
    "normalise",
    "open_embedder",
    "text_hash",
]

Matrix = npt.NDArray[np.float32]


class Provider(Protocol):
    async def embed_batch(self, texts: Sequence[str]) -> Matrix:
        """One row per text, in order (not necessarily normalised)."""
        ...

    async def aclose(self) -> None: ...


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embedder_hash(config: EmbeddingConfig) -> str:
    """The cache identity of an embedder: everything that shapes a vector, nothing secret.

    The key is left out, as in the LLM ledger: two keys naming the same model share vectors.
    A local model is named by its folder (or the bundled copy), not by its files' contents.
    """
    canonical = json.dumps(
        {
            "provider": config.provider,
            "base_url": None if config.base_url is None else config.base_url.rstrip("/"),
            "path": config.path,
            "model_id": config.model_id,
            "dimension": config.dimension,
            "params": config.params,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalise(vectors: Matrix, expected_rows: int, dim: int, model_key: str) -> Matrix:
    """Unit rows, after checking the provider's answer has the promised shape and values."""
    if vectors.shape != (expected_rows, dim):
        raise LLMError(
            "bad_output",
            f"embedding {model_key}: expected {expected_rows} vectors of {dim} values, "
            f"got shape {vectors.shape}",
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or (norms == 0).any():
        raise LLMError("bad_output", f"embedding {model_key}: a vector is zero or not finite")
    unit: Matrix = (vectors / norms).astype(np.float32)
    return unit


class Embedder:
    """Embeds texts through `provider`, reading and filling the Postgres cache."""

    def __init__(self, config: EmbeddingConfig, engine: AsyncEngine, provider: Provider) -> None:
        self.config = config
        self.identity = embedder_hash(config)
        self._engine = engine
        self._provider = provider
        self._slots = asyncio.Semaphore(config.max_concurrency)

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def dimension(self) -> int:
        return self.config.dimension

    async def aclose(self) -> None:
        await self._provider.aclose()

    async def embed(self, texts: Sequence[str]) -> Matrix:
        """(len(texts), dimension) float32 unit rows; cached texts cost no request."""
        hashes = [text_hash(text) for text in texts]
        unique = list(dict.fromkeys(hashes))
        stored = await cached_vectors(self._engine, self.identity, unique)
        first_text = dict(zip(hashes, texts, strict=True))
        missing = [h for h in unique if h not in stored]
        size = self.config.batch_size
        batches = [missing[i : i + size] for i in range(0, len(missing), size)]
        for fresh in await asyncio.gather(*(self._embed_batch(b, first_text) for b in batches)):
            stored.update(fresh)
        out = np.empty((len(texts), self.dimension), np.float32)
        for row, digest in enumerate(hashes):
            out[row] = from_bytes(stored[digest], self.dimension)
        return out

    async def _embed_batch(self, batch: list[str], texts: dict[str, str]) -> dict[str, bytes]:
        async with self._slots:
            raw = await self._provider.embed_batch([texts[h] for h in batch])
        vectors = normalise(raw, len(batch), self.dimension, self.key)
        rows = [(digest, to_bytes(vector)) for digest, vector in zip(batch, vectors, strict=True)]
        # stored as soon as it arrives: a crash later loses at most the batches in flight
        await store_cached_vectors(self._engine, self.identity, self.dimension, rows)
        return dict(rows)


def open_embedder(config: EmbeddingConfig, engine: AsyncEngine, *, service: str) -> Embedder:
    """The configured embedder; the local provider loads its model on first use."""
    provider: Provider
    if config.provider == "local":
        provider = LocalEmbeddings(config)
    else:
        provider = HttpEmbeddings(config, engine, service=service)
    return Embedder(config, engine, provider)
