"""Model listings of the three protocols through the Gateway, against the simulator over real
HTTP with keys required: every page is followed, Gemini keeps generateContent models only,
a release or retirement at the simulator shows at the next listing, and errors keep their
class."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.llm_sim.catalogue import EMBEDDING_MODEL
from services.llm_sim.personas import PERSONAS, UNRELEASED
from specstress.config import RetryPolicy, WatchProvider
from specstress.db.engine import create_engine
from specstress.llm import Gateway, LLMError
from specstress.llm.providers import anthropic, gemini

KEY_ENV = "SPECSTRESS_LISTING_TEST_KEY"
LISTED = set(PERSONAS) - UNRELEASED


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[Gateway]:
    engine = create_engine(database_url)
    gateway = Gateway(engine, service="watcher")
    try:
        yield gateway
    finally:
        await gateway.aclose()
        await engine.dispose()


def account(protocol: str, sim_url: str) -> WatchProvider:
    base = f"{sim_url}/v1" if protocol == "openai" else sim_url
    return WatchProvider.model_validate(
        {
            "key": f"sim-{protocol}",
            "protocol": protocol,
            "base_url": base,
            "api_key_env": KEY_ENV,
            "retry": RetryPolicy(max_attempts=2, base_seconds=0.01),
        }
    )


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
async def test_listing_follows_releases_and_retirements(
    protocol: str, sim_url: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-listing-test")
    # small pages, so Anthropic and Gemini listings take several requests
    monkeypatch.setattr(anthropic, "MODELS_PAGE_LIMIT", 3)
    monkeypatch.setattr(gemini, "MODELS_PAGE_SIZE", 4)
    watched = account(protocol, sim_url)
    first = await gateway.list_models(watched)
    ids = [m.model_id for m in first]
    assert len(ids) == len(set(ids)), "a page was read twice"
    assert set(ids) == LISTED
    assert EMBEDDING_MODEL not in ids
    async with httpx.AsyncClient(base_url=sim_url) as client:
        (
            await client.post(
                "/sim/models", json={"release": "borealis-nova", "created": 1_800_000_000}
            )
        ).raise_for_status()
        (await client.post("/sim/models", json={"retire": "aurora-balanced"})).raise_for_status()
    second = {m.model_id: m for m in await gateway.list_models(watched)}
    assert set(second) == LISTED - {"aurora-balanced"} | {"borealis-nova"}
    if protocol != "gemini":
        assert second["borealis-nova"].created == 1_800_000_000
    if protocol != "openai":
        assert second["borealis-nova"].display_name == "Borealis Nova"


async def test_openai_shutdown_date_marks_deprecated(
    sim_url: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-listing-test")
    async with httpx.AsyncClient(base_url=sim_url) as client:
        (await client.post("/sim/models", json={"deprecate": "aurora-cautious"})).raise_for_status()
    listed = {m.model_id: m for m in await gateway.list_models(account("openai", sim_url))}
    assert listed["aurora-cautious"].deprecated
    assert not listed["aurora-balanced"].deprecated


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
async def test_missing_key_is_a_terminal_error(
    protocol: str, sim_url: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(LLMError) as caught:
        await gateway.list_models(account(protocol, sim_url))
    assert caught.value.error_class == "terminal_client"
    assert caught.value.http_status == 401


async def test_server_errors_are_retried_then_reported(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def broken(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": {"message": "down"}}, status=503)

    app = web.Application()
    app.router.add_get("/v1/models", broken)
    server = TestServer(app)
    await server.start_server()
    try:
        monkeypatch.setenv(KEY_ENV, "sk-listing-test")
        with pytest.raises(LLMError) as caught:
            await gateway.list_models(account("openai", str(server.make_url("")).rstrip("/")))
    finally:
        await server.close()
    assert caught.value.error_class == "retryable"
    assert calls == 2
