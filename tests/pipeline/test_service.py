"""The shared service runtime on real NATS and Postgres: ack last, dead letters with reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from specstress.contracts import Event, ResponseRequested, ScenarioCreated, VerdictRequested
from specstress.local.stack import wait_until_idle
from specstress.pipeline.bus import connect, consumers, publish
from tests.support.pipeline_harness import rows, running_stack

# text Postgres cannot store, on subjects of three stages: (event, payload, problem named)
BAD_BYTES: list[tuple[type[Event], bytes, str]] = [
    (ResponseRequested, b'{"scenario_id": "s\x00", "model_key": "aurora-cautious"}', "NUL"),
    (ResponseRequested, b'{"scenario_id": "s\\u0000", "model_key": "aurora-cautious"}', "NUL"),
    (ScenarioCreated, b'{"scenario_id": "s\xff", "pair_id": "p", "variant": "neutral"}', "UTF-8"),
    (
        VerdictRequested,
        b'{"response_id": "r\\ud800", "judge": "judge-strict", "spec_id": "example"}',
        "surrogate",
    ),
]


async def test_poison_messages_become_dead_letters_with_their_reason(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every stage that consumes a subject gets its own copy, and its own dead letter
    bad_bytes = sorted(
        (c.durable, problem)
        for event, _data, problem in BAD_BYTES
        for c in consumers()
        if c.event is event
    )
    async with running_stack(tmp_path, nats_url, database_url, monkeypatch) as running:
        client = await connect(nats_url, "test")
        try:
            js = client.jetstream()
            await js.publish(ResponseRequested.subject, b'{"scenario_id": 1}')
            await js.publish(ResponseRequested.subject, b"not json at all")
            # a known scenario id is not needed: the unknown model is caught first
            await publish(js, ResponseRequested(scenario_id="s", model_key="no-such-model"))
            for event, data, _problem in BAD_BYTES:
                await js.publish(event.subject, data)
        finally:
            await client.close()
        await wait_until_idle(running.config, timeout=60, stack=running.stack)
        for _ in range(50):
            letters = await rows(
                database_url,
                "SELECT consumer, reason, reason_code, stage, unit, deliveries, payload "
                "FROM dead_letters ORDER BY consumer, reason",
            )
            if len(letters) >= 3 + len(bad_bytes):
                break
            await asyncio.sleep(0.1)
        # dead-lettered at the first delivery, not after burning every retry
        assert {letter["deliveries"] for letter in letters} == {1}
        assert not await rows(database_url, "SELECT 1 FROM llm_calls")

        invalid = [x for x in letters if str(x["reason"]).startswith("invalid_bytes: ")]
        named = sorted(
            (str(x["consumer"]), problem)
            for x in invalid
            for problem in ("NUL", "UTF-8", "surrogate")
            if problem in str(x["reason"])
        )
        assert named == bad_bytes
        for letter in invalid:
            # the reason names the problem, not the payload; the payload is kept, made storable
            assert '"s' not in str(letter["reason"]) and "\x00" not in str(letter["payload"])

        others = [x for x in letters if x not in invalid]
        assert [x["consumer"] for x in others] == ["responder__responses_requested"] * 3
        reasons = sorted(str(x["reason"]) for x in others)
        assert reasons[0].startswith("invalid payload")
        assert reasons[1].startswith("invalid payload")
        assert "no-such-model" in reasons[2] and reasons[2].startswith("unprocessable")
        assert {x["reason_code"] for x in invalid} == {"invalid_bytes"}
        codes = [(r["reason_code"], r["stage"], r["unit"]) for r in others]
        assert sorted(codes, key=str) == sorted(
            [
                ("invalid_payload", "responses", None),
                ("invalid_payload", "responses", None),
                ("unprocessable", "responses", "s/no-such-model"),
            ],
            key=str,
        )
        # the message names the field, never the payload
        assert all("not json at all" not in str(r["reason"]) for r in letters)
