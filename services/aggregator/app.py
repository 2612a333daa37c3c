"""classifications.created -> disagreement rows (recomputed) -> disagreement.flagged.

D (specstress.method.disagreement) is recomputed from every stored classification each time,
never adjusted per message, so a redelivery or a late model simply gives the current truth.
"""

from __future__ import annotations

from specstress.contracts import ClassificationsCreated, DisagreementFlagged
from specstress.db import store
from specstress.method.disagreement import disagreement_rows
from specstress.pipeline.service import Service
from specstress.pipeline.stage import Stage

service = Service("aggregator")


@service.handles(ClassificationsCreated)
async def aggregate(stage: Stage, event: ClassificationsCreated) -> None:
    positions = await store.scenario_positions(stage.engine, event.scenario_id)
    rows = disagreement_rows(
        stage.config,
        event.scenario_id,
        [(p.model_key, p.family, p.value1_position, p.value2_position) for p in positions],
    )
    flags = [
        DisagreementFlagged(
            scenario_id=event.scenario_id,
            model_set=r["model_set"],
            disagreement=round(r["disagreement"], 6),
            members=r["members"],
            answers=len(positions),
        )
        for r in rows
        if r["high"]
    ]
    await store.upsert_disagreement(stage.engine, rows)
    await stage.emit(*flags)
