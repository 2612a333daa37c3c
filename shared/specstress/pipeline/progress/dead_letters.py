"""Dead letters people can act on: list them by reason, replay them once the cause is fixed.

A replay publishes the stored event again under a message id of its own (the original id may
still sit in the stream's duplicate window) and marks the dead letter replayed, so its unit
counts as pending again until it is done or dead-lettered anew. Replaying twice does nothing
the second time: only open dead letters are replayed. Every handler looks its result up first,
and the gateway serves an answer already in the ledger instead of buying it again, so a replay
of work that was paid for costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.contracts import ALL_EVENTS, Event
from specstress.db import reading
from specstress.db.schema import REASON_CODES, dead_letters
from specstress.errors import InputError

__all__ = ["DeadLetter", "Replayed", "list_dead_letters", "replay"]

_EVENTS = {event.subject: event for event in ALL_EVENTS}


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: int
    consumer: str
    subject: str
    stage: str | None
    unit: str | None
    reason_code: str
    reason: str
    deliveries: int
    created_at: datetime
    replayed_at: datetime | None


@dataclass(frozen=True)
class Replayed:
    # published again and marked replayed
    replayed: list[int]
    # payloads that do not parse as their event: nothing to publish, left open
    unreplayable: list[int]


def _check_reason(reason: str | None) -> None:
    if reason is not None and reason not in REASON_CODES:
        raise InputError(f"unknown reason code {reason!r}; the codes are {', '.join(REASON_CODES)}")


async def list_dead_letters(
    engine: AsyncEngine,
    *,
    reason: str | None = None,
    include_replayed: bool = False,
    ids: Sequence[int] = (),
) -> list[DeadLetter]:
    """Dead letters, oldest first: open ones unless `include_replayed`."""
    _check_reason(reason)
    query = select(
        dead_letters.c.dead_letter_id,
        dead_letters.c.consumer,
        dead_letters.c.subject,
        dead_letters.c.stage,
        dead_letters.c.unit,
        dead_letters.c.reason_code,
        dead_letters.c.reason,
        dead_letters.c.deliveries,
        dead_letters.c.created_at,
        dead_letters.c.replayed_at,
    ).order_by(dead_letters.c.dead_letter_id)
    if reason is not None:
        query = query.where(dead_letters.c.reason_code == reason)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    if ids:
        query = query.where(dead_letters.c.dead_letter_id.in_(list(ids)))
    async with reading(engine) as conn:
        return [DeadLetter(**row._mapping) for row in await conn.execute(query)]


async def replay(
    engine: AsyncEngine,
    js: JetStreamContext,
    *,
    reason: str | None = None,
    ids: Sequence[int] = (),
) -> Replayed:
    """Publish the events of the open dead letters chosen by reason code or id, once each."""
    _check_reason(reason)
    if reason is None and not ids:
        raise InputError("choose the dead letters to replay: a reason code or ids")
    chosen = select(
        dead_letters.c.dead_letter_id, dead_letters.c.subject, dead_letters.c.payload
    ).where(dead_letters.c.replayed_at.is_(None))
    if reason is not None:
        chosen = chosen.where(dead_letters.c.reason_code == reason)
    if ids:
        chosen = chosen.where(dead_letters.c.dead_letter_id.in_(list(ids)))
    async with reading(engine) as conn:
        letters = (await conn.execute(chosen.order_by(dead_letters.c.dead_letter_id))).all()
    done = Replayed(replayed=[], unreplayable=[])
    for letter in letters:
        event = _event(letter.subject, letter.payload)
        if event is None:
            done.unreplayable.append(letter.dead_letter_id)
            continue
        # published before it is marked: a crash in between leaves it open, and the next
        # replay's publish has the same id, which the stream drops as a duplicate
        await js.publish(
            event.subject,
            event.model_dump_json().encode(),
            headers={"Nats-Msg-Id": f"{event.message_id()}.replay.{letter.dead_letter_id}"},
        )
        async with engine.begin() as conn:
            await conn.execute(
                update(dead_letters)
                .where(
                    dead_letters.c.dead_letter_id == letter.dead_letter_id,
                    dead_letters.c.replayed_at.is_(None),
                )
                .values(replayed_at=func.now())
            )
        done.replayed.append(letter.dead_letter_id)
    return done


def _event(subject: str, payload: str) -> Event | None:
    event_type = _EVENTS.get(subject)
    if event_type is None:
        return None
    try:
        return event_type.model_validate_json(payload)
    except ValidationError:
        return None
