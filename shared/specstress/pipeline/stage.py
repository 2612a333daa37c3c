"""What a stage's handler sees: the `Stage` it is given, and `Unprocessable` to refuse a message.

A stage registers plain handlers `async def handle(stage: Stage, event: SomeEvent) -> None`
(`Handler`); the delivery policy (`specstress.pipeline.delivery`) parses the event, runs the
handler and sorts its outcome, the service (`specstress.pipeline.service`) builds the `Stage`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config
from specstress.contracts import Event
from specstress.llm.gateway import Gateway
from specstress.pipeline.bus import publish
from specstress.pipeline.prompts import PromptLibrary

__all__ = ["E", "Handler", "Stage", "Unprocessable"]

E = TypeVar("E", bound=Event)
Handler = Callable[["Stage", Any], Awaitable[None]]


class Unprocessable(Exception):
    """The message can never succeed (e.g. it names something the config does not define)."""


@dataclass
class Stage:
    """What a handler gets: config, database, LLM gateway, prompts and the bus."""

    name: str
    config: Config
    engine: AsyncEngine
    gateway: Gateway
    prompts: PromptLibrary
    js: JetStreamContext
    # per-stage memo for things loaded once (e.g. a parsed spec)
    cache: dict[str, Any] = field(default_factory=dict)

    async def emit(self, *events: Event) -> None:
        # concurrently: each publish waits for its own PubAck, and a fan-out of many events
        # would otherwise wait for them one round trip at a time
        await asyncio.gather(*(publish(self.js, event) for event in events))
