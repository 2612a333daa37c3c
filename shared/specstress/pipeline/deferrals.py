"""How often each bus message was put back to wait rather than because it failed.

JetStream counts every delivery alike; the runtime subtracts these deferrals from that count
so that waiting out a rate limit, a paused provider or a spent budget never dead-letters work.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.engine import reading
from specstress.db.schema import message_deferrals

__all__ = ["MAX_REASON_CHARS", "deferrals", "forget_deferrals", "record_deferral"]

MAX_REASON_CHARS = 1000


async def deferrals(engine: AsyncEngine, consumer: str, stream_sequence: int) -> int:
    query = select(message_deferrals.c.deferrals).where(
        message_deferrals.c.consumer == consumer,
        message_deferrals.c.stream_sequence == stream_sequence,
    )
    async with reading(engine) as conn:
        count = await conn.scalar(query)
    return int(count or 0)


async def record_deferral(
    engine: AsyncEngine, consumer: str, stream_sequence: int, reason: str
) -> None:
    statement = insert(message_deferrals).values(
        consumer=consumer,
        stream_sequence=stream_sequence,
        deferrals=1,
        last_reason=reason[:MAX_REASON_CHARS],
    )
    statement = statement.on_conflict_do_update(
        index_elements=[message_deferrals.c.consumer, message_deferrals.c.stream_sequence],
        set_={
            "deferrals": message_deferrals.c.deferrals + 1,
            "last_reason": statement.excluded.last_reason,
            "updated_at": func.now(),
        },
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def forget_deferrals(engine: AsyncEngine, consumer: str, stream_sequence: int) -> None:
    """Drop the count once the message is settled (acked or dead-lettered)."""
    statement = delete(message_deferrals).where(
        message_deferrals.c.consumer == consumer,
        message_deferrals.c.stream_sequence == stream_sequence,
    )
    async with engine.begin() as conn:
        await conn.execute(statement)
