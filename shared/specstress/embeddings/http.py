"""Embedding models over HTTP: OpenAI-compatible `/embeddings` and Gemini `batchEmbedContents`.

The conventions are the LLM gateway's: httpx on aiohttp's transport, explicit timeouts, the same
error classes and full-jitter retries that honour retry-after (header or Gemini's body), one
`llm_calls` ledger row per attempt (stage `embedding`, so spend and budgets include embeddings)
and the same Prometheus series. The vectors themselves are cached by the embedder, not in the
ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt
from httpx_aiohttp import AiohttpTransport
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import EmbeddingConfig
from specstress.llm import http
from specstress.llm.errors import LLMError
from specstress.llm.ledger import AttemptRecord, record_attempt
from specstress.llm.protocol import MAX_ERROR_CHARS, LenientModel, ProtocolAdapter
from specstress.llm.providers.gemini import GeminiGenerate, api_root
from specstress.llm.providers.openai import OpenAIChat
from specstress.llm.retry import wait_to_retry

__all__ = [
    "STAGE",
    "EmbeddingAnswer",
    "GeminiEmbeddingsWire",
    "HttpEmbeddings",
    "OpenAIEmbeddingsWire",
    "batch_hash",
]

STAGE = "embedding"
_MAX_CONNECTIONS = 64

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingAnswer:
    vectors: npt.NDArray[np.float32]
    input_tokens: int


class _OpenAIItem(LenientModel):
    index: int
    embedding: list[float]


class _OpenAIUsage(LenientModel):
    prompt_tokens: int = 0


class _OpenAIAnswer(LenientModel):
    data: list[_OpenAIItem]
    usage: _OpenAIUsage | None = None


class _GeminiItem(LenientModel):
    values: list[float]


class _GeminiAnswer(LenientModel):
    embeddings: list[_GeminiItem]


class _Wire(Protocol):
    # the chat protocol of the same provider: its key headers and error bodies are the same
    chat: ProtocolAdapter

    def url(self, config: EmbeddingConfig) -> str: ...

    def body(self, config: EmbeddingConfig, texts: Sequence[str]) -> dict[str, Any]: ...

    def answer(self, payload: Any, count: int) -> EmbeddingAnswer:
        """Raises ValueError when the payload is not `count` vectors."""
        ...


class OpenAIEmbeddingsWire:
    chat: ProtocolAdapter = OpenAIChat()

    def url(self, config: EmbeddingConfig) -> str:
        assert config.base_url is not None
        return f"{config.base_url.rstrip('/')}/embeddings"

    def body(self, config: EmbeddingConfig, texts: Sequence[str]) -> dict[str, Any]:
        return {
            **config.params,
            "model": config.model_id,
            "input": list(texts),
            "encoding_format": "float",
        }

    def answer(self, payload: Any, count: int) -> EmbeddingAnswer:
        try:
            parsed = _OpenAIAnswer.model_validate(payload)
        except ValidationError as exc:
            raise ValueError(f"not an embeddings list ({exc.error_count()} problems)") from None
        items = sorted(parsed.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(count)):
            raise ValueError(f"expected indexes 0..{count - 1}, got {len(items)} items")
        vectors = np.asarray([item.embedding for item in items], np.float32)
        tokens = parsed.usage.prompt_tokens if parsed.usage is not None else 0
        return EmbeddingAnswer(vectors, tokens)


class GeminiEmbeddingsWire:
    chat: ProtocolAdapter = GeminiGenerate()

    def url(self, config: EmbeddingConfig) -> str:
        assert config.base_url is not None
        return f"{api_root(config.base_url)}/models/{_gemini_model(config)}:batchEmbedContents"

    def body(self, config: EmbeddingConfig, texts: Sequence[str]) -> dict[str, Any]:
        model = f"models/{_gemini_model(config)}"
        return {
            "requests": [
                {**config.params, "model": model, "content": {"parts": [{"text": text}]}}
                for text in texts
            ]
        }

    def answer(self, payload: Any, count: int) -> EmbeddingAnswer:
        try:
            parsed = _GeminiAnswer.model_validate(payload)
        except ValidationError as exc:
            raise ValueError(f"not a batch of embeddings ({exc.error_count()} problems)") from None
        if len(parsed.embeddings) != count:
            raise ValueError(f"expected {count} embeddings, got {len(parsed.embeddings)}")
        # batchEmbedContents reports no token usage
        return EmbeddingAnswer(np.asarray([e.values for e in parsed.embeddings], np.float32), 0)


def _gemini_model(config: EmbeddingConfig) -> str:
    return config.model_id.removeprefix("models/")


_WIRES: dict[str, _Wire] = {"openai": OpenAIEmbeddingsWire(), "gemini": GeminiEmbeddingsWire()}


def batch_hash(config: EmbeddingConfig, texts: Sequence[str]) -> str:
    """The ledger's request hash of one batch (the provider's request without the key)."""
    wire = _WIRES[config.provider]
    canonical = json.dumps(
        {"url": wire.url(config), "body": wire.body(config, texts)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class HttpEmbeddings:
    """An embedding provider over HTTP, with retries, ledger rows and metrics per attempt."""

    def __init__(self, config: EmbeddingConfig, engine: AsyncEngine, *, service: str) -> None:
        self._config = config
        self._wire = _WIRES[config.provider]
        self._engine = engine
        self._http = httpx.AsyncClient(
            transport=AiohttpTransport(limits=httpx.Limits(max_connections=_MAX_CONNECTIONS)),
            headers={"User-Agent": f"specstress-{service}"},
        )
        self._rng = random.Random()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def embed_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        config = self._config
        digest = batch_hash(config, texts)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                answer = await self._send(texts)
            except LLMError as error:
                latency = time.perf_counter() - started
                await self._record(digest, attempt, latency, error=error)
                if error.error_class != "retryable" or attempt >= config.retry.max_attempts:
                    raise
                await wait_to_retry(
                    f"embedding {config.key}", attempt, config.retry, self._rng, error
                )
            else:
                latency = time.perf_counter() - started
                await self._record(digest, attempt, latency, answer=answer)
                return answer.vectors

    async def _send(self, texts: Sequence[str]) -> EmbeddingAnswer:
        config, wire = self._config, self._wire
        api_key = config.api_key()
        response = await http.send(
            self._http,
            "POST",
            wire.url(config),
            json=wire.body(config, texts),
            headers=wire.chat.api_headers(api_key),
            timeout=http.request_timeout(config.timeouts),
            api_key=api_key,
        )
        status = response.status_code
        payload = http.json_body(response)
        if 200 <= status < 300:
            try:
                if payload is None:
                    raise ValueError("success status with a non-JSON body")
                return wire.answer(payload, len(texts))
            except ValueError as exc:
                message = http.scrub(str(exc), api_key)[:MAX_ERROR_CHARS]
                raise LLMError("retryable", message, http_status=status) from None
        raise http.reply_error(response, wire.chat.parse_error(payload, response.text), api_key)

    async def _record(
        self,
        digest: str,
        attempt: int,
        latency: float,
        *,
        answer: EmbeddingAnswer | None = None,
        error: LLMError | None = None,
    ) -> None:
        config = self._config
        tokens = answer.input_tokens if answer is not None else 0
        cost = tokens * config.prices.input_per_mtok / 1_000_000
        await record_attempt(
            self._engine,
            AttemptRecord(
                request_hash=digest,
                stage=STAGE,
                model_key=config.key,
                attempt=attempt,
                status="ok" if error is None else "error",
                latency_seconds=latency,
                error_class=None if error is None else error.error_class,
                error=None if error is None else str(error),
                http_status=200 if error is None else error.http_status,
                input_tokens=tokens,
                cost_usd=cost,
            ),
        )
        outcome = "ok" if error is None else error.error_class
        metrics.llm_calls.labels(config.key, STAGE, outcome).inc()
        metrics.llm_latency.labels(config.key, STAGE).observe(latency)
        if answer is not None:
            metrics.llm_tokens.labels(config.key, STAGE, "input").inc(tokens)
            metrics.llm_cost.labels(config.key, STAGE).inc(cost)
