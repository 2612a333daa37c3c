"""Where a model's entry comes from: the config file, else the `models` table.

A model the watcher (or `specstress models add --discovered`) registers is not in the config
file; its entry, built from its rule's template, is stored as JSON in `models.entry` and read
back through the same ModelConfig validation. Every service resolves a target key here, so a
discovered model is as usable as a configured one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.config import Config, ModelConfig
from specstress.db import store

__all__ = ["TargetState", "resolve_model", "stored_entry", "target_state"]


@dataclass(frozen=True)
class TargetState:
    """A target model as the database has it: whether it takes new calls, and its entry."""

    model: ModelConfig
    active: bool
    registered: bool


async def stored_entry(engine: AsyncEngine, key: str) -> tuple[bool, ModelConfig | None] | None:
    """(active, stored entry) of a registered model; None when the key is not registered.

    Read on every message (a model switched off stops being asked at once), so concurrent
    handlers' reads share one query."""
    state = await store.model_state(engine, key)
    if state is None:
        return None
    active, entry = state
    return active, None if entry is None else ModelConfig.model_validate(entry)


async def target_state(config: Config, engine: AsyncEngine, key: str) -> TargetState | None:
    """The entry of `key` (the config file's first, then the stored one) and whether it is
    active; None when neither defines it."""
    stored = await stored_entry(engine, key)
    try:
        model = config.model(key)
    except KeyError:
        if stored is None or stored[1] is None:
            return None
        model = stored[1]
    if stored is None:
        return TargetState(model, active=True, registered=False)
    return TargetState(model, active=stored[0], registered=True)


async def resolve_model(config: Config, engine: AsyncEngine, key: str) -> ModelConfig:
    """The entry of a model key, from the config file or the database; KeyError when none."""
    state = await target_state(config, engine, key)
    if state is None:
        raise KeyError(key)
    return state.model
