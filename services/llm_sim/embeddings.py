"""Simulated embedding endpoints: OpenAI `POST /v1/embeddings` and Gemini `batchEmbedContents`.

A vector is the normalised sum of one pseudo-random Gaussian vector per lower-cased word, each
seeded by a hash of the word (plus one for the whole text, so different texts never coincide).
The same text always gives the same vector, and texts that share words lie closer together,
which gives diversity selection something real to work on offline. These are simulator
vectors, not a language model's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from functools import lru_cache
from typing import Any

import numpy as np
from aiohttp import web

# model id -> native dimension
EMBEDDING_MODELS = {"sim-embed": 384}
# the Gemini API serves embeddings under both versions (google-genai uses v1 by default)
GEMINI_ROUTES = (
    "/v1beta/models/{model}:batchEmbedContents",
    "/v1/models/{model}:batchEmbedContents",
)
MAX_INPUTS = 2048
_WORD = re.compile(r"\w+")
# the whole-text component is small: shared words dominate the geometry
_TEXT_WEIGHT = 0.35


@lru_cache(maxsize=65536)
def _word_vector(word: str, dim: int) -> tuple[float, ...]:
    seed = int.from_bytes(hashlib.sha256(f"{dim}:{word}".encode()).digest()[:8], "little")
    return tuple(np.random.default_rng(seed).standard_normal(dim).tolist())


def embed_text(text: str, dim: int) -> list[float]:
    """The simulator's unit vector for `text`."""
    total = _TEXT_WEIGHT * np.asarray(_word_vector("\x00text:" + text, dim))
    for word in _WORD.findall(text.lower()):
        total += np.asarray(_word_vector(word, dim))
    norm = float(np.linalg.norm(total))
    return [float(v) for v in total / norm]


def _encode(text: str, dim: int, encoding: str) -> list[float] | str:
    """A vector as numbers, or as base64 of little-endian float32 (the official SDK's default)."""
    vector = embed_text(text, dim)
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()


def _tokens(texts: list[str]) -> int:
    return sum(math.ceil(len(text) / 4) for text in texts)


def _openai_error(status: int, message: str, code: str | None, param: str | None) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return web.json_response(body, status=status)


def _dimension(model: str, requested: Any) -> int | str:
    """The output dimension, or an error message."""
    native = EMBEDDING_MODELS[model]
    if requested is None:
        return native
    if (
        isinstance(requested, bool)
        or not isinstance(requested, int)
        or not 1 <= requested <= native
    ):
        return f"dimensions must be an integer from 1 to {native}"
    return requested


async def openai_embeddings(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.text())
    except ValueError as exc:
        return _openai_error(400, f"The request body is not valid JSON: {exc}", None, None)
    if not isinstance(body, dict):
        return _openai_error(400, "The request body must be a JSON object.", None, None)
    model = body.get("model")
    if not isinstance(model, str) or model not in EMBEDDING_MODELS:
        return _openai_error(
            404,
            f"The model `{model}` does not exist on this simulator.",
            "model_not_found",
            "model",
        )
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(texts, list)
        or not 1 <= len(texts) <= MAX_INPUTS
        or not all(isinstance(t, str) and t for t in texts)
    ):
        return _openai_error(
            400, f"`input` must be a non-empty string or 1..{MAX_INPUTS} of them.", None, "input"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return _openai_error(
            400, "`encoding_format` must be float or base64.", None, "encoding_format"
        )
    dim = _dimension(model, body.get("dimensions"))
    if isinstance(dim, str):
        return _openai_error(400, dim, None, "dimensions")
    tokens = _tokens(texts)
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": _encode(text, dim, encoding)}
                for index, text in enumerate(texts)
            ],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _gemini_error(status: int, message: str, state: str) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message, "status": state}}, status=status
    )


async def gemini_batch_embed(request: web.Request) -> web.Response:
    model = request.match_info["model"]
    if model not in EMBEDDING_MODELS:
        return _gemini_error(404, f"models/{model} is not found on this simulator.", "NOT_FOUND")
    try:
        body = json.loads(await request.text())
    except ValueError as exc:
        return _gemini_error(400, f"Invalid JSON payload: {exc}", "INVALID_ARGUMENT")
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not 1 <= len(requests) <= 100:
        return _gemini_error(400, "`requests` must hold 1 to 100 items.", "INVALID_ARGUMENT")
    vectors: list[dict[str, list[float]]] = []
    for index, item in enumerate(requests):
        parts = item.get("content", {}).get("parts") if isinstance(item, dict) else None
        if not isinstance(parts, list) or not all(
            isinstance(p, dict) and isinstance(p.get("text"), str) for p in parts
        ):
            return _gemini_error(
                400, f"requests[{index}].content needs text parts.", "INVALID_ARGUMENT"
            )
        if item.get("model") not in (f"models/{model}", None):
            return _gemini_error(
                400, f"requests[{index}].model must be models/{model}.", "INVALID_ARGUMENT"
            )
        dim = _dimension(model, item.get("outputDimensionality"))
        if isinstance(dim, str):
            return _gemini_error(400, dim, "INVALID_ARGUMENT")
        text = "".join(p["text"] for p in parts)
        vectors.append({"values": embed_text(text, dim)})
    return web.json_response({"embeddings": vectors})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", openai_embeddings)
    for route in GEMINI_ROUTES:
        app.router.add_post(route, gemini_batch_embed)
