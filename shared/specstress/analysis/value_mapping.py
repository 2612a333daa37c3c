"""`specstress map-values`: each distinctive value text to the level-2 taxonomy category whose
embedding (name and description) is nearest by cosine similarity (method 2.13).

Figures 10 and 11 are views over the stored mapping (`figure10_value_categories`,
`figure11_cooccurrence`), both built on `answer_value_categories`: which answer shows which
category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specstress.analysis.value_categories import (
    ValueCategory,
    store_value_categories,
    unmapped_values,
)
from specstress.config import Config
from specstress.db import create_engine
from specstress.embeddings import open_embedder, text_hash
from specstress.errors import InputError
from specstress.method import Value, load_taxonomy

__all__ = ["MappingSummary", "category_text", "run_value_mapping"]

# texts embedded per round, so a large backlog is stored as it goes rather than held at once
_EMBED_ROUND = 10_000


@dataclass(frozen=True)
class MappingSummary:
    taxonomy_version: str
    embedding_key: str
    categories: int
    mapped: int


def category_text(category: Value) -> str:
    """What a category is embedded as: its name, and its description when it has one."""
    return f"{category.name}: {category.description}" if category.description else category.name


async def run_value_mapping(config: Config) -> MappingSummary:
    """Map every distinctive value text not yet mapped under the configured taxonomy version and
    embedding key, and store the mappings in one transaction."""
    settings = config.embedding
    if settings is None:
        raise InputError("the config has no `embedding` section: mapping values needs one")
    taxonomy = load_taxonomy(config.taxonomy.source)
    categories = taxonomy.by_level(2)
    if not categories:
        raise InputError(
            f"taxonomy {config.taxonomy.source!r} has no level-2 categories to map values onto"
        )
    engine = create_engine(config.database_url)
    embedder = open_embedder(settings, engine, service="cli")
    try:
        texts = await unmapped_values(engine, taxonomy.version, settings.key)
        mapped: list[ValueCategory] = []
        if texts:
            centres = await embedder.embed([category_text(c) for c in categories])
            for begin in range(0, len(texts), _EMBED_ROUND):
                part = texts[begin : begin + _EMBED_ROUND]
                # rows are unit vectors, so the dot product is the cosine similarity
                similarity = (await embedder.embed(part)) @ centres.T
                nearest = np.argmax(similarity, axis=1)
                mapped += [
                    ValueCategory(
                        value_hash=text_hash(value),
                        value=value,
                        category_id=categories[column].value_id,
                        category=categories[column].name,
                        similarity=float(similarity[row, column]),
                    )
                    for row, (value, column) in enumerate(zip(part, nearest.tolist(), strict=True))
                ]
        await store_value_categories(engine, taxonomy.version, settings.key, mapped)
    finally:
        await embedder.aclose()
        await engine.dispose()
    return MappingSummary(taxonomy.version, settings.key, len(categories), len(mapped))
