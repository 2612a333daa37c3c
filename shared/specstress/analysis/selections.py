"""Named diversity selections: what was run (`selections`) and what it kept (`selection_members`).

Analyses filter on a selection by joining its members:

    JOIN selection_members m ON m.scenario_id = x.scenario_id AND m.selection = 'paper'

or, in SQLAlchemy Core, `.where(in_selection(table.c.scenario_id, "paper"))`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.schema import selection_members, selections

__all__ = [
    "SelectionRecord",
    "in_selection",
    "list_selections",
    "replace_selection",
    "selection_scenarios",
]

_WRITE_BATCH = 5_000


@dataclass(frozen=True)
class SelectionRecord:
    name: str
    method: str
    delta: float
    weighted_by: str | None
    seed: int
    embedding_key: str
    candidates: int


def in_selection(scenario_id: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """A WHERE clause keeping the rows whose scenario belongs to the named selection."""
    members = select(selection_members.c.scenario_id).where(selection_members.c.selection == name)
    return scenario_id.in_(members)


async def replace_selection(
    engine: AsyncEngine,
    record: SelectionRecord,
    members: Sequence[tuple[str, float]],
) -> None:
    """Store the selection's settings and its members (scenario id, pick distance) in pick
    order, replacing any earlier members of the same name in one transaction."""
    settings = {
        "method": record.method,
        "delta": record.delta,
        "weighted_by": record.weighted_by,
        "seed": record.seed,
        "embedding_key": record.embedding_key,
        "candidates": record.candidates,
        "selected": len(members),
    }
    upsert = insert(selections).values(name=record.name, **settings)
    upsert = upsert.on_conflict_do_update(
        index_elements=[selections.c.name], set_={**settings, "computed_at": func.now()}
    )
    rows = [
        {
            "selection": record.name,
            "scenario_id": scenario_id,
            "rank": rank,
            "pick_distance": distance if math.isfinite(distance) else None,
        }
        for rank, (scenario_id, distance) in enumerate(members)
    ]
    async with engine.begin() as conn:
        # the upsert locks the selection's row, so concurrent recomputations take turns
        await conn.execute(upsert)
        await conn.execute(
            delete(selection_members).where(selection_members.c.selection == record.name)
        )
        for begin in range(0, len(rows), _WRITE_BATCH):
            await conn.execute(insert(selection_members), rows[begin : begin + _WRITE_BATCH])


async def selection_scenarios(engine: AsyncEngine, name: str) -> list[str]:
    """Member scenario ids of a selection, in pick order."""
    query = (
        select(selection_members.c.scenario_id)
        .where(selection_members.c.selection == name)
        .order_by(selection_members.c.rank)
    )
    async with engine.connect() as conn:
        return list((await conn.scalars(query)).all())


async def list_selections(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every stored selection's settings and counts, by name."""
    async with engine.connect() as conn:
        result = await conn.execute(select(selections).order_by(selections.c.name))
        return [dict(row._mapping) for row in result]
