"""Diversity selection end to end: embed the scenarios that lack a vector, run k-center over
them, store the result as a named selection (method 2.4).

The same scenarios, vectors, settings and seed give the same selection; running a name again
replaces its members in one transaction.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.analysis.selections import SelectionRecord, replace_selection
from specstress.config import Config, EmbeddingConfig
from specstress.db import create_engine
from specstress.embeddings import Embedder, open_embedder
from specstress.embeddings.cache import (
    embedders_of_key,
    insert_scenario_embeddings,
    scenarios_missing_embedding,
    selection_inputs,
    to_bytes,
)
from specstress.errors import InputError
from specstress.method.selection import DEFAULT_DELTA, DEFAULT_WEIGHTED_STOP, Method, select_kcenter

__all__ = ["SelectionSummary", "embed_scenarios", "embedding_config", "run_selection"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
# scenarios embedded and stored per round: bounds memory and the work a crash can lose
_EMBED_ROUND = 2048


@dataclass(frozen=True)
class SelectionSummary:
    name: str
    method: str
    delta: float
    weighted_by: str | None
    seed: int
    embedded: int
    candidates: int
    selected: int
    embed_seconds: float
    select_seconds: float


def embedding_config(config: Config) -> EmbeddingConfig:
    if config.embedding is None:
        raise InputError("the config has no `embedding` section: diversity selection needs one")
    return config.embedding


async def embed_scenarios(engine: AsyncEngine, embedder: Embedder) -> int:
    """Give every scenario a vector under the embedder's key; returns how many were added."""
    others = [h for h in await embedders_of_key(engine, embedder.key) if h != embedder.identity]
    if others:
        raise InputError(
            f"embedding key {embedder.key!r} already holds vectors of another model or settings "
            "(provider, base_url, model_id, dimension, params): give the new settings a new key"
        )
    missing = await scenarios_missing_embedding(engine, embedder.key)
    for begin in range(0, len(missing), _EMBED_ROUND):
        part = missing[begin : begin + _EMBED_ROUND]
        vectors = await embedder.embed([query for _, query in part])
        rows = [(sid, to_bytes(v)) for (sid, _), v in zip(part, vectors, strict=True)]
        await insert_scenario_embeddings(
            engine, embedder.key, embedder.identity, embedder.dimension, rows
        )
    return len(missing)


async def run_selection(
    config: Config,
    name: str,
    *,
    delta: float | None = None,
    weighted_by: str | None = None,
    seed: int = 0,
    method: Method = "auto",
) -> SelectionSummary:
    """Embed what is missing, select, and store the selection under `name`."""
    settings = embedding_config(config)
    if not _NAME.match(name):
        raise InputError(
            f"selection name {name!r}: use 1-64 lower-case letters, digits, '_' or '-'"
        )
    if weighted_by is not None and weighted_by not in config.model_sets:
        raise InputError(f"--weighted-by: no model set {weighted_by!r} in the config")
    stop = delta if delta is not None else (DEFAULT_WEIGHTED_STOP if weighted_by else DEFAULT_DELTA)
    engine = create_engine(config.database_url)
    embedder = open_embedder(settings, engine, service="cli")
    try:
        started = time.perf_counter()
        embedded = await embed_scenarios(engine, embedder)
        embed_seconds = time.perf_counter() - started
        ids, vectors, weights = await selection_inputs(
            engine, settings.key, settings.dimension, weighted_by
        )
        if not ids:
            what = (
                f"a disagreement value on model set {weighted_by!r}" if weighted_by else "a vector"
            )
            raise InputError(f"no scenario has {what} yet: nothing to select from")
        started = time.perf_counter()
        result = await asyncio.to_thread(
            select_kcenter, vectors, stop=stop, seed=seed, weights=weights, method=method
        )
        select_seconds = time.perf_counter() - started
        record = SelectionRecord(
            name=name,
            method=result.method,
            delta=stop,
            weighted_by=weighted_by,
            seed=seed,
            embedding_key=settings.key,
            candidates=len(ids),
        )
        members = [
            (ids[row], float(distance))
            for row, distance in zip(result.order.tolist(), result.pick_distance, strict=True)
        ]
        await replace_selection(engine, record, members)
    finally:
        await embedder.aclose()
        await engine.dispose()
    return SelectionSummary(
        name=name,
        method=result.method,
        delta=stop,
        weighted_by=weighted_by,
        seed=seed,
        embedded=embedded,
        candidates=len(ids),
        selected=len(members),
        embed_seconds=embed_seconds,
        select_seconds=select_seconds,
    )
