"""The classifier's join on real Postgres and NATS with the simulator over HTTP: nothing is asked
before every active model has answered, answers whose events come together are asked for once,
the event of an answer already announced costs nothing, and a late model's answer is classified
on its own."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from services.classifier.app import on_response
from specstress.contracts import ResponseCreated
from specstress.db import store
from specstress.pipeline.stage import Stage
from tests.support.rows import add_answer, add_pair, add_scenario, add_spectrum

EARLY = ("aurora-cautious", "aurora-deferential", "borealis-candid")
LATE = "borealis-latecomer"


@pytest.fixture(autouse=True)
async def _facts(stage: Stage) -> None:
    """A pair with one scenario and its spectrum; the early target models registered."""
    await add_pair(stage.engine, "p")
    await add_scenario(stage.engine, "s", "p", "value1")
    await add_spectrum(stage.engine, "sp", "p")
    for model in EARLY:
        await store.register_model(stage.engine, model, stage.config.model(model).family)


async def _answered(stage: Stage, model: str) -> ResponseCreated:
    await add_answer(stage.engine, f"r-{model}", "s", model, text=f"{model} answers")
    return ResponseCreated(response_id=f"r-{model}", scenario_id="s", pair_id="p", model_key=model)


async def _classified(stage: Stage) -> list[str]:
    async with stage.engine.connect() as conn:
        rows = await conn.execute(text("SELECT response_id FROM classifications ORDER BY 1"))
        return [r.response_id for r in rows]


async def _announced(stage: Stage) -> int:
    """ClassificationsCreated events on the stream (the only events these tests publish)."""
    info = await stage.js.stream_info(stage.config.bus.stream)
    return info.state.messages


async def test_events_that_come_together_are_asked_for_once(stage: Stage, asked: list[str]) -> None:
    first, second = [await _answered(stage, model) for model in EARLY[:2]]
    await asyncio.gather(on_response(stage, first), on_response(stage, second))
    assert asked == []  # one active model has not answered yet

    events = [first, second, await _answered(stage, EARLY[2])]
    await asyncio.gather(*(on_response(stage, event) for event in events))
    assert asked == ["classifier"]
    assert await _classified(stage) == [f"r-{model}" for model in EARLY]
    assert await _announced(stage) == 1

    # redelivered: every answer is announced already, nothing is looked up or asked
    await asyncio.gather(*(on_response(stage, event) for event in events))
    assert asked == ["classifier"]

    await store.register_model(stage.engine, LATE, stage.config.model(LATE).family)
    await on_response(stage, await _answered(stage, LATE))
    assert asked == ["classifier", "classifier"]
    assert await _classified(stage) == sorted(f"r-{model}" for model in (*EARLY, LATE))
    assert await _announced(stage) == 2
