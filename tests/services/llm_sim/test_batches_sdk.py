"""The official openai and anthropic SDKs run batch jobs against the simulator: its batch
endpoints speak the shapes real clients parse, so the gateway's batch code, tested against the
simulator, is tested against something real clients accept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anthropic
import openai
import pytest

from services.llm_sim.answers import Message, answer
from services.llm_sim.conditions import BatchConditions, Conditions
from tests.support.simulator import served_simulator

TARGET = "borealis-candid"
KEY = "sdk-test-key"
PROCESSING_SECONDS = 0.3


def _question(n: int) -> str:
    return f"Item {n}: should I tell my friend the truth?"


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    conditions = Conditions(
        seed=1, batches=BatchConditions(processing_seconds=PROCESSING_SECONDS, errored=0.25)
    )
    async with served_simulator(require_key=True, conditions=conditions) as url:
        yield url


async def test_openai_sdk_runs_a_batch(sim_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{sim_url}/v1", api_key=KEY, max_retries=0)
    lines = [
        {
            "custom_id": f"item-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": TARGET, "messages": [{"role": "user", "content": _question(n)}]},
        }
        for n in range(8)
    ]
    try:
        upload = await client.files.create(
            file=("input.jsonl", "\n".join(json.dumps(line) for line in lines).encode()),
            purpose="batch",
        )
        batch = await client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "sdk"},
        )
        assert batch.status == "validating"
        assert batch.output_file_id is None
        await asyncio.sleep(PROCESSING_SECONDS * 2)
        batch = await client.batches.retrieve(batch.id)
        listed = await client.batches.list(limit=5)
        assert batch.status == "completed"
        assert batch.request_counts is not None and batch.request_counts.total == 8
        assert [b.id for b in listed.data] == [batch.id]
        assert batch.metadata == {"run": "sdk"}
        assert batch.output_file_id is not None and batch.error_file_id is not None
        output = await client.files.content(batch.output_file_id)
        errors = await client.files.content(batch.error_file_id)
    finally:
        await client.close()

    answered = [json.loads(line) for line in output.text.splitlines()]
    failed = [json.loads(line) for line in errors.text.splitlines()]
    assert len(answered) == batch.request_counts.completed
    assert len(failed) == batch.request_counts.failed > 0
    for record in answered:
        n = int(record["custom_id"].split("-")[1])
        body = record["response"]["body"]
        assert body["choices"][0]["message"]["content"] == answer(
            TARGET, [Message("user", _question(n))]
        )
        assert body["usage"]["prompt_tokens"] > 0
    assert {r["response"]["status_code"] for r in failed} == {500}


async def test_anthropic_sdk_runs_a_message_batch(sim_url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=sim_url, api_key=KEY, max_retries=0)
    try:
        batch = await client.messages.batches.create(
            requests=[
                {
                    "custom_id": f"item-{n}",
                    "params": {
                        "model": TARGET,
                        "max_tokens": 1024,
                        "messages": [{"role": "user", "content": _question(n)}],
                    },
                }
                for n in range(8)
            ]
        )
        assert batch.processing_status == "in_progress"
        assert batch.results_url is None
        await asyncio.sleep(PROCESSING_SECONDS * 2)
        batch = await client.messages.batches.retrieve(batch.id)
        assert batch.processing_status == "ended"
        results = [r async for r in await client.messages.batches.results(batch.id)]
    finally:
        await client.close()

    counts = batch.request_counts
    assert counts.succeeded + counts.errored == 8 and counts.errored > 0
    kinds = {r.result.type for r in results}
    assert kinds == {"succeeded", "errored"}
    for result in results:
        if result.result.type == "succeeded":
            n = int(result.custom_id.split("-")[1])
            text = result.result.message.content[0]
            assert text.type == "text"
            assert text.text == answer(TARGET, [Message("user", _question(n))])
            assert result.result.message.usage.input_tokens > 0
