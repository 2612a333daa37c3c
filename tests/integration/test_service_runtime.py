"""The shared service runtime on real NATS and Postgres: ack last, dead letters with reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from specstress.contracts import ResponseRequested
from specstress.local.stack import wait_until_idle
from specstress.pipeline.bus import connect, publish
from tests.pipeline_harness import rows, running_stack


async def test_poison_messages_become_dead_letters_with_their_reason(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_stack(tmp_path, nats_url, database_url, monkeypatch) as running:
        client = await connect(nats_url, "test")
        try:
            js = client.jetstream()
            await js.publish(ResponseRequested.subject, b'{"scenario_id": 1}')
            await js.publish(ResponseRequested.subject, b"not json at all")
            # a known scenario id is not needed: the unknown model is caught first
            await publish(js, ResponseRequested(scenario_id="s", model_key="no-such-model"))
        finally:
            await client.close()
        await wait_until_idle(running.config, timeout=60, stack=running.stack)
        for _ in range(50):
            letters = await rows(
                database_url, "SELECT consumer, reason, deliveries FROM dead_letters ORDER BY 1, 2"
            )
            if len(letters) == 3:
                break
            await asyncio.sleep(0.1)
        assert [letter["consumer"] for letter in letters] == ["responder__responses_requested"] * 3
        reasons = sorted(str(letter["reason"]) for letter in letters)
        assert reasons[0].startswith("invalid payload")
        assert reasons[1].startswith("invalid payload")
        assert "no-such-model" in reasons[2] and reasons[2].startswith("unprocessable")
        # dead-lettered at the first delivery, not after burning every retry
        assert {letter["deliveries"] for letter in letters} == {1}
