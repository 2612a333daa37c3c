"""Batch mode of the gateway against the simulator's batch endpoints over HTTP, on a real
Postgres: queue, send, poll, collect into the ledger, and the cases where a batch cannot help."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.llm_sim import build_app
from services.llm_sim.answers import Message, answer
from services.llm_sim.conditions import BatchConditions, Conditions
from specstress.config import BatchMode, ModelConfig, Prices, StageBatches
from specstress.db.engine import create_engine
from specstress.llm.batches import coordinator as coordinator_module
from specstress.llm.batches import queue as batch_db
from specstress.llm.batches.apis import BATCH_APIS
from specstress.llm.errors import BatchPending
from specstress.llm.gateway import Gateway
from specstress.llm.messages import ChatMessage, ModelOutput, Usage
from specstress.llm.traffic.accounting import call_cost
from tests.support.schema import mentioning, schema_differences

STAGE = "responder"
PRICES = Prices(input_per_mtok=3.0, output_per_mtok=15.0, batch_discount=0.5)
BATCHES = StageBatches(
    responder=BatchMode(
        enabled=True, max_requests_per_batch=100, max_wait_seconds=0.0, poll_seconds=0.05
    )
)
OUR_TABLES = {"llm_batch_jobs", "llm_batch_requests"}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url)
    yield created
    await created.dispose()


async def _simulator(batches: BatchConditions) -> TestServer:
    server = TestServer(build_app(conditions=Conditions(seed=3, batches=batches)))
    await server.start_server()
    return server


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    server = await _simulator(BatchConditions(processing_seconds=0.2))
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _model(sim_url: str, protocol: str, key: str = "target") -> ModelConfig:
    base_url = f"{sim_url}/v1" if protocol == "openai" else sim_url
    return ModelConfig(
        key=key,
        family="sim",
        protocol=protocol,
        base_url=base_url,
        model_id="aurora-balanced",
        prices=PRICES,
    )


def _question(n: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"Question number {n}: what should I do?")]


async def _ask(gateway: Gateway, model: ModelConfig, n: int) -> ModelOutput | None:
    """The answer, or None while it waits in a batch."""
    try:
        return await gateway.generate(model, _question(n), stage=STAGE)
    except BatchPending:
        return None


async def _until(check: Callable[[], Any], *steps: Gateway, rounds: int = 400) -> None:
    """Run the gateways' batch steps until `check()` is true (a bounded number of rounds)."""
    for _ in range(rounds):
        if await check():
            return
        for gateway in steps:
            assert gateway.batches is not None
            await gateway.batches.step()
        await asyncio.sleep(0.05)
    raise AssertionError("the batch did not settle")


async def _rows(engine: AsyncEngine, sql: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql))]


async def _settled(engine: AsyncEngine) -> bool:
    rows = await _rows(
        engine,
        "SELECT count(*) AS n FROM llm_batch_requests WHERE status IN ('pending', 'submitted')",
    )
    return bool(rows[0]["n"] == 0)


async def _sim_stats(sim_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        batch_stats = (await client.get("/sim/batches")).json()
        online = (await client.get("/sim/stats")).json()
    return batch_stats, online


async def test_the_migration_creates_exactly_the_declared_tables(engine: AsyncEngine) -> None:
    assert mentioning(await schema_differences(engine), OUR_TABLES) == []


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_batched_answer_is_the_online_answer_at_the_batch_price(
    engine: AsyncEngine, sim_url: str, protocol: str
) -> None:
    model = _model(sim_url, protocol)
    gateway = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    try:
        assert await _ask(gateway, model, 1) is None
        # asking again while it waits queues nothing new
        assert await _ask(gateway, model, 1) is None
        await _until(lambda: _settled(engine), gateway)
        output = await _ask(gateway, model, 1)
    finally:
        await gateway.aclose()

    assert output is not None and output.from_cache
    expected = answer("aurora-balanced", [Message("user", _question(1)[0].content)])
    assert output.text == expected
    ledger = await _rows(
        engine, "SELECT status, cost_usd, input_tokens, output_tokens FROM llm_calls"
    )
    assert len(ledger) == 1 and ledger[0]["status"] == "ok"
    usage = Usage(input_tokens=ledger[0]["input_tokens"], output_tokens=ledger[0]["output_tokens"])
    assert usage.input_tokens > 0
    assert ledger[0]["cost_usd"] == pytest.approx(call_cost(PRICES, usage) * 0.5)
    jobs = await _rows(
        engine,
        "SELECT status, request_count, succeeded_count, provider_batch_id FROM llm_batch_jobs",
    )
    assert len(jobs) == 1
    assert jobs[0]["status"] == "ended"
    assert (jobs[0]["request_count"], jobs[0]["succeeded_count"]) == (1, 1)
    batch_stats, online = await _sim_stats(sim_url)
    assert batch_stats["jobs_created"] == {protocol: 1}
    assert online["models"] == {}, "nothing may be asked online"


async def test_two_replicas_send_each_request_once(database_url: str, sim_url: str) -> None:
    model = _model(sim_url, "openai")
    engines = [create_engine(database_url), create_engine(database_url)]
    replicas = [Gateway(e, service=STAGE, batch=BATCHES, models=[model]) for e in engines]
    try:
        # both replicas get every message, at the same time, and both run their batch loop
        await asyncio.gather(*(_ask(g, model, n) for n in range(30) for g in replicas))
        await asyncio.gather(*(g.batches.step() for g in replicas if g.batches is not None))
        await _until(lambda: _settled(engines[0]), *replicas)
        outputs = await asyncio.gather(*(_ask(replicas[n % 2], model, n) for n in range(30)))
    finally:
        for gateway in replicas:
            await gateway.aclose()
        for created in engines:
            await created.dispose()

    assert all(o is not None and o.from_cache for o in outputs)
    batch_stats, online = await _sim_stats(sim_url)
    assert batch_stats["items"] == {"openai": 30}
    assert batch_stats["custom_ids_sent_twice"] == 0
    assert online["models"] == {}
    check = create_engine(database_url)
    try:
        jobs = await _rows(
            check, "SELECT count(*) AS n, sum(request_count) AS r FROM llm_batch_jobs"
        )
        paid = await _rows(check, "SELECT count(*) AS n FROM llm_calls WHERE status = 'ok'")
    finally:
        await check.dispose()
    assert jobs[0]["n"] == batch_stats["jobs_created"]["openai"]
    assert jobs[0]["r"] == 30
    assert paid[0]["n"] == 30


async def test_errored_and_expired_items_are_called_online(engine: AsyncEngine) -> None:
    server = await _simulator(BatchConditions(processing_seconds=0.1, errored=0.3, expired=0.2))
    sim_url = str(server.make_url("")).rstrip("/")
    model = _model(sim_url, "anthropic")
    gateway = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    try:
        for n in range(20):
            assert await _ask(gateway, model, n) is None
        await _until(lambda: _settled(engine), gateway)
        outputs = [await _ask(gateway, model, n) for n in range(20)]
        batch_stats, online = await _sim_stats(sim_url)
    finally:
        await gateway.aclose()
        await server.close()

    assert all(o is not None for o in outputs)
    for n, output in enumerate(outputs):
        assert output is not None
        assert output.text == answer("aurora-balanced", [Message("user", _question(n)[0].content)])
    requests = await _rows(engine, "SELECT status, error FROM llm_batch_requests")
    failed = [r for r in requests if r["status"] == "failed"]
    assert 0 < len(failed) < 20, "the seed should fail some items and answer others"
    assert {str(r["error"]).split(":")[0] for r in failed} == {"batch expired", "batch errored"}
    # each failed item: one error row from the batch, then one paid online answer
    ledger = await _rows(
        engine,
        "SELECT status, count(*) AS n, sum(cost_usd) AS cost FROM llm_calls GROUP BY status",
    )
    by_status = {r["status"]: r for r in ledger}
    assert by_status["error"]["n"] == len(failed)
    assert by_status["ok"]["n"] == 20
    assert online["models"]["aurora-balanced"]["ok"] == len(failed)
    job = (await _rows(engine, "SELECT * FROM llm_batch_jobs"))[0]
    assert job["succeeded_count"] == 20 - len(failed)
    assert job["errored_count"] + job["expired_count"] == len(failed)
    assert job["errored_count"] > 0 and job["expired_count"] > 0
    assert batch_stats["jobs_created"] == {"anthropic": 1}
    # what `specstress status` shows
    assert await batch_db.summary(engine) == [
        batch_db.Summary(
            stage=STAGE,
            pending=0,
            submitted=0,
            succeeded=20 - len(failed),
            failed=len(failed),
            jobs_running=0,
        )
    ]


class _LostAfterCreation(Exception):
    """Stands for a process that died after the provider created its job."""


@pytest.mark.parametrize(("protocol", "resent"), [("openai", False), ("anthropic", True)])
async def test_a_job_whose_sender_died_before_storing_its_id(
    engine: AsyncEngine,
    sim_url: str,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    resent: bool,
) -> None:
    model = _model(sim_url, protocol)
    sender = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    survivor = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    store_the_id = batch_db.mark_submitted

    async def lost(*args: Any, **kwargs: Any) -> None:
        raise _LostAfterCreation

    try:
        for n in range(3):
            await _ask(sender, model, n)
        monkeypatch.setattr(batch_db, "mark_submitted", lost)
        assert sender.batches is not None
        with pytest.raises(_LostAfterCreation):
            await sender.batches.step()
        monkeypatch.setattr(batch_db, "mark_submitted", store_the_id)
        monkeypatch.setattr(coordinator_module, "ABANDONED_AFTER_SECONDS", 0.0)
        await _until(lambda: _settled(engine), survivor)
        outputs = [await _ask(survivor, model, n) for n in range(3)]
    finally:
        await sender.aclose()
        await survivor.aclose()

    assert all(o is not None and o.from_cache for o in outputs)
    batch_stats, online = await _sim_stats(sim_url)
    assert online["models"] == {}
    jobs = await _rows(engine, "SELECT status FROM llm_batch_jobs ORDER BY created_at")
    if resent:
        # a message batch cannot be found again: its requests went out in a second job
        assert [j["status"] for j in jobs] == ["released", "ended"]
        assert batch_stats["jobs_created"] == {protocol: 2}
        assert batch_stats["custom_ids_sent_twice"] == 3
    else:
        # the OpenAI job was found by the id in its metadata and polled as if nothing happened
        assert [j["status"] for j in jobs] == ["ended"]
        assert batch_stats["jobs_created"] == {protocol: 1}
        assert batch_stats["custom_ids_sent_twice"] == 0
    paid = await _rows(engine, "SELECT count(*) AS n FROM llm_calls WHERE status = 'ok'")
    assert paid[0]["n"] == 3


async def test_jobs_are_cut_to_the_size_limit_of_the_api(
    engine: AsyncEngine, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(sim_url, "openai")
    api = BATCH_APIS["openai"]
    gateway = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    try:
        for n in range(5):
            await _ask(gateway, model, n)
        sizes = await _rows(engine, "SELECT body_bytes FROM llm_batch_requests")
        # room for two requests per job, not three
        largest = max(int(r["body_bytes"]) for r in sizes) + api.item_overhead_bytes
        monkeypatch.setattr(api, "max_bytes", 2 * largest + largest // 2)
        await _until(lambda: _settled(engine), gateway)
    finally:
        await gateway.aclose()

    jobs = await _rows(engine, "SELECT request_count FROM llm_batch_jobs ORDER BY created_at")
    assert [j["request_count"] for j in jobs] == [2, 2, 1]
    batch_stats, _ = await _sim_stats(sim_url)
    assert batch_stats["items"] == {"openai": 5}


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_batch_calls_carry_the_key_and_store_none_of_it(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    canary = "sk-canary-" + "b7" * 16
    monkeypatch.setenv("BATCH_CANARY_KEY", canary)
    server = TestServer(
        build_app(
            require_key=True, conditions=Conditions(batches=BatchConditions(processing_seconds=0))
        )
    )
    await server.start_server()
    sim_url = str(server.make_url("")).rstrip("/")
    model = _model(sim_url, protocol).model_copy(update={"api_key_env": "BATCH_CANARY_KEY"})
    gateway = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    try:
        assert await _ask(gateway, model, 7) is None
        queued = await _rows(engine, "SELECT CAST(body AS text) AS body FROM llm_batch_requests")
        await _until(lambda: _settled(engine), gateway)
        output = await _ask(gateway, model, 7)
        batch_stats, _ = await _sim_stats(sim_url)
    finally:
        await gateway.aclose()
        await server.close()

    # the simulator refuses every batch call without a key: the job ran, so each carried it
    assert output is not None and batch_stats["jobs_created"] == {protocol: 1}
    stored = await _rows(
        engine,
        "SELECT (SELECT string_agg(CAST(r AS text), ' ') FROM llm_batch_requests r) AS requests,"
        " (SELECT string_agg(CAST(j AS text), ' ') FROM llm_batch_jobs j) AS jobs,"
        " (SELECT string_agg(CAST(c AS text), ' ') FROM llm_calls c) AS calls",
    )
    assert all(text_ is not None and canary not in text_ for text_ in stored[0].values())
    # the body as it waited to be sent: the request itself, without the key
    assert "Question number 7" in queued[0]["body"]
    assert canary not in queued[0]["body"]


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_a_job_of_many_megabytes_is_sent_whole(
    engine: AsyncEngine, sim_url: str, protocol: str
) -> None:
    # judge prompts carry the whole spec (~200 kB each): a job is megabytes, not kilobytes
    model = _model(sim_url, protocol)
    spec = "The assistant should weigh candour against kindness. " * 4000
    gateway = Gateway(engine, service=STAGE, batch=BATCHES, models=[model])
    try:
        for n in range(12):
            prompt = [ChatMessage(role="user", content=f"{spec}\nCase {n}: comply?")]
            with pytest.raises(BatchPending):
                await gateway.generate(model, prompt, stage=STAGE)
        await _until(lambda: _settled(engine), gateway)
    finally:
        await gateway.aclose()

    sizes = await _rows(engine, "SELECT sum(body_bytes) AS total FROM llm_batch_requests")
    assert sizes[0]["total"] > 2_000_000
    jobs = await _rows(engine, "SELECT status, succeeded_count FROM llm_batch_jobs")
    assert jobs == [{"status": "ended", "succeeded_count": 12}]
