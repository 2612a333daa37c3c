"""Find work whose triggering event never reached a service and emit that event again.

Events normally cannot go missing (a handler re-publishes on redelivery), but a stream can be
lost or purged, and a process can die between storing pairs and publishing them. Everything
needed to rebuild the pending work is in Postgres, so this scan re-emits exactly the events that
lead to the missing rows. Re-emitting is always safe: every handler looks its result up first.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.contracts import (
    ClassificationsCreated,
    Event,
    PairSampled,
    ResponseRequested,
    ScenarioCreated,
    VerdictRequested,
)
from specstress.db import store
from specstress.pipeline.bus import publish
from specstress.pipeline.progress.completeness import pending_units

__all__ = ["pending_events", "reconcile"]


async def pending_events(config: Config, engine: AsyncEngine) -> dict[str, list[Event]]:
    """The events that would complete the stored work, by the stage they restart."""
    pairs: list[Event] = [PairSampled.of_row(p) for p in await store.unsettled_pairs(engine)]
    # pending answers and verdicts as the completeness model counts them: a dead-lettered one
    # is not pending (`specstress dead-letters replay` sends it again once its cause is fixed)
    responses: list[Event] = []
    for unit in await pending_units(engine, config, stage="responses", limit=None):
        scenario, model = unit.unit.split("/", 1)
        responses.append(ResponseRequested(scenario_id=scenario, model_key=model))
    spectra: list[Event] = [
        ScenarioCreated(scenario_id=s.scenario_id, pair_id=s.pair_id, variant=s.variant)
        for s in await store.pairs_missing_spectra(engine)
    ]
    aggregation: list[Event] = [
        ClassificationsCreated(scenario_id=scenario, response_ids=response_ids)
        for scenario, response_ids in await store.unaggregated_scenarios(engine)
    ]
    verdicts: list[Event] = []
    for unit in await pending_units(engine, config, stage="verdicts", limit=None):
        response_id, judge, spec_id = unit.unit.split("/", 2)
        verdicts.append(VerdictRequested(response_id=response_id, judge=judge, spec_id=spec_id))
    return {
        "scenario_generator": pairs,
        "responder": responses,
        "spectrum_builder": spectra,
        "aggregator": aggregation,
        "compliance_judge": verdicts,
    }


async def reconcile(config: Config, engine: AsyncEngine, js: JetStreamContext) -> dict[str, int]:
    """Re-emit every pending event; returns how many were accepted as new by the stream."""
    accepted: dict[str, int] = {}
    for stage, events in (await pending_events(config, engine)).items():
        accepted[stage] = 0
        for event in events:
            accepted[stage] += await publish(js, event)
    return accepted
