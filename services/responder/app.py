"""scenarios.created / models.registered -> responses.requested -> responses.created.

The fan-out is its own event so that each (scenario, model) answer is a separate unit of work
that any replica can take, and a newly registered model is backfilled the same way.
"""

from __future__ import annotations

from specstress import ids
from specstress.contracts import (
    ModelRegistered,
    ResponseCreated,
    ResponseRequested,
    ScenarioCreated,
)
from specstress.db import store
from specstress.llm.messages import ChatMessage
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage, Unprocessable
from specstress.text import Cuts
from specstress.watch import target_state

service = Service("responder")
BACKFILL_PAGE = 1000


@service.handles(ScenarioCreated)
async def fan_out(stage: Stage, event: ScenarioCreated) -> None:
    await stage.emit(
        *(
            ResponseRequested(scenario_id=event.scenario_id, model_key=model_key)
            for model_key, _family in await store.active_models(stage.engine)
        )
    )


@service.handles(ModelRegistered)
async def backfill(stage: Stage, event: ModelRegistered) -> None:
    after = ""
    while page := await store.scenario_ids_after(stage.engine, after, BACKFILL_PAGE):
        await stage.emit(
            *(ResponseRequested(scenario_id=s, model_key=event.model_key) for s in page)
        )
        after = page[-1]


@service.handles(ResponseRequested)
async def respond(stage: Stage, event: ResponseRequested) -> None:
    target = await target_state(stage.config, stage.engine, event.model_key)
    if target is None:
        raise Unprocessable(
            f"model {event.model_key!r} is defined neither in this config nor in the database"
        )
    if not target.active:
        # retired (its provider no longer lists it): no new calls, its answers stay
        return
    found = await store.scenario_with_response(stage.engine, event.scenario_id, event.model_key)
    if found is None:
        raise Unprocessable(f"scenario {event.scenario_id} is not in the database")
    scenario, response_id = found
    if response_id is None:
        model = target.model
        # the model sees the user's query alone, as it would in a product
        output = await stage.gateway.generate(
            model, [ChatMessage(role="user", content=scenario.query)], stage=stage.name
        )
        response_id = ids.response_id(scenario.scenario_id, model.key, model.recorded_params())
        caps, cuts = stage.config.text_caps, Cuts()
        await store.insert_response(
            stage.engine,
            response_id=response_id,
            scenario_id=scenario.scenario_id,
            model_key=model.key,
            text=cuts.cap("text", output.text, caps.answer_chars),
            thinking=cuts.cap_optional("thinking", output.thinking, caps.thinking_chars),
            params=model.recorded_params(),
            llm_call_hash=output.request_hash,
            cut=cuts.record,
        )
    await stage.emit(
        ResponseCreated(
            response_id=response_id,
            scenario_id=scenario.scenario_id,
            pair_id=scenario.pair_id,
            model_key=event.model_key,
        )
    )
