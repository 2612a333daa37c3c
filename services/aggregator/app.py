"""classifications.created -> disagreement rows (recomputed) -> disagreement.flagged.

D(x, M) is the larger of the two population standard deviations of the positions that the
models of set M got on scenario x. It is recomputed from every stored classification each time,
never adjusted per message, so a redelivery or a late model simply gives the current truth.
"""

from __future__ import annotations

from statistics import pstdev

from specstress.contracts import ClassificationsCreated, DisagreementFlagged
from specstress.db import store
from specstress.pipeline.service import Service, Stage

service = Service("aggregator")


def disagreement(positions: list[tuple[int, int]]) -> tuple[float, float, float]:
    """(std of value-1 positions, std of value-2 positions, D) with population std (ddof=0)."""
    value1_std = pstdev(p[0] for p in positions)
    value2_std = pstdev(p[1] for p in positions)
    return value1_std, value2_std, max(value1_std, value2_std)


@service.handles(ClassificationsCreated)
async def aggregate(stage: Stage, event: ClassificationsCreated) -> None:
    positions = await store.scenario_positions(stage.engine, event.scenario_id)
    by_model = {p.model_key: p for p in positions}
    available = [(p.model_key, p.family) for p in positions]
    threshold = stage.config.disagreement.threshold
    rows = []
    flags = []
    for name in stage.config.model_sets:
        members = stage.config.model_set_members(name, available)
        if len(members) < 2:
            continue
        value1_std, value2_std, d = disagreement(
            [(by_model[k].value1_position, by_model[k].value2_position) for k in members]
        )
        high = d >= threshold
        rows.append(
            {
                "scenario_id": event.scenario_id,
                "model_set": name,
                "members": len(members),
                "value1_std": value1_std,
                "value2_std": value2_std,
                "disagreement": d,
                "high": high,
            }
        )
        if high:
            flags.append(
                DisagreementFlagged(
                    scenario_id=event.scenario_id,
                    model_set=name,
                    disagreement=round(d, 6),
                    members=len(members),
                )
            )
    await store.upsert_disagreement(stage.engine, rows)
    await stage.emit(*flags)
