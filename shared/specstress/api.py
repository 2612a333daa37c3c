"""The use cases behind the commands: set up, start a run, add a model, reconcile.

The CLI, the local stack, the tests and the benchmarks call these; nothing here prints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import ids
from specstress.analysis import queries as analysis
from specstress.config import Config, ModelConfig
from specstress.contracts import Event, ModelRegistered
from specstress.db import create_engine, store, upgrade
from specstress.errors import InputError
from specstress.method import load_taxonomy, sample_pairs
from specstress.pipeline import ensure_topology, publish
from specstress.pipeline.bus import servers
from specstress.pipeline.reconcile import pair_sampled, reconcile
from specstress.watch import Comparison, Estimate, compare, estimate_backfill, register_discovered
from specstress.watch import store as discoveries

__all__ = [
    "add_discovered",
    "add_model",
    "bus",
    "compare_models",
    "database",
    "estimate_model",
    "find_discovered",
    "initialise",
    "run_reconcile",
    "start_run",
]

CLIENT_NAME = "specstress-cli"
CLI_CONNECT_ATTEMPTS = 3


@asynccontextmanager
async def database(config: Config) -> AsyncIterator[AsyncEngine]:
    """An engine on the config's database, disposed on exit."""
    engine = create_engine(config.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _quiet(_: Exception) -> None:
    """nats-py logs each failed attempt with a traceback; the one error raised says enough."""


def _host(url: str) -> str:
    where = urlsplit(url if "://" in url else f"nats://{url}")
    return f"{where.hostname}:{where.port or 4222}"


@asynccontextmanager
async def bus(config: Config) -> AsyncIterator[NatsClient]:
    """A NATS connection for the command line, closed on exit. Unlike a service, a command gives
    up on a server that does not answer after a few attempts, with an InputError naming it."""
    try:
        client = await nats.connect(
            servers(config.nats_url),
            name=CLIENT_NAME,
            connect_timeout=2,
            max_reconnect_attempts=CLI_CONNECT_ATTEMPTS,
            reconnect_time_wait=1,
            error_cb=_quiet,
        )
    except (nats.errors.Error, OSError) as exc:
        where = ", ".join(_host(url) for url in servers(config.nats_url))
        raise InputError(
            f"NATS at {where} does not answer "
            f"({str(exc) or type(exc).__name__}); start it, or point NATS_URL (or the "
            "config's nats_url) at a running server"
        ) from None
    try:
        yield client
    finally:
        await client.close()


async def initialise(config: Config) -> dict[str, int]:
    """Schema, stream and consumers, taxonomy and target models; idempotent."""
    taxonomy = load_taxonomy(config.taxonomy.source)
    await upgrade(config.database_url)
    async with database(config) as engine:
        await store.insert_values(
            engine,
            [
                {
                    "taxonomy_version": taxonomy.version,
                    "value_id": v.value_id,
                    "name": v.name,
                    "level": v.level,
                    "parent_id": v.parent_id,
                    "description": v.description,
                    "pct_total_occurrences": v.pct_total_occurrences,
                }
                for v in taxonomy.values
            ],
        )
        for key in config.roles.targets:
            await store.register_model(engine, key, config.model(key).family)
        await analysis.sync_config(engine, config)
    async with bus(config) as client:
        await ensure_topology(client.jetstream(), config.bus)
    return {"values": len(taxonomy.values), "targets": len(config.roles.targets)}


async def start_run(config: Config, pairs: int, seed: int) -> tuple[int, int]:
    """Sample pairs, store them and publish them; returns (pairs published, pairs new)."""
    taxonomy = load_taxonomy(config.taxonomy.source)
    sampled = sample_pairs(taxonomy, pairs, seed)
    rows = [
        {
            "pair_id": ids.pair_id(v1, v2, taxonomy.version),
            "value1": v1,
            "value2": v2,
            "taxonomy_version": taxonomy.version,
            "seed": seed,
            "run_index": index,
        }
        for index, (v1, v2) in enumerate(sampled)
    ]
    async with database(config) as engine:
        new = await store.insert_pairs(engine, rows)
    async with bus(config) as client:
        js = client.jetstream()
        for row in rows:
            await publish(js, pair_sampled(row))
    return len(rows), new


async def add_model(config: Config, key: str) -> bool:
    """Register a configured model as a target; the responder backfills every scenario."""
    model = config.model(key)
    async with database(config) as engine:
        await store.register_model(engine, key, model.family)
    async with bus(config) as client:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        return await publish(
            client.jetstream(), ModelRegistered(model_key=key, registered_at=stamp)
        )


async def run_reconcile(config: Config) -> dict[str, int]:
    """Re-emit the events of stored work that never finished."""
    async with database(config) as engine, bus(config) as client:
        return await reconcile(config, engine, client.jetstream())


async def find_discovered(config: Config, ident: str) -> discoveries.Discovered:
    """A discovered model by its target key or as `provider/model id`; InputError when none."""
    async with database(config) as engine:
        rows = await discoveries.discovered(engine)
    found = [r for r in rows if ident in (r.model_key, f"{r.provider}/{r.model_id}")]
    if not found:
        raise InputError(
            f"no discovered model {ident!r}: name its key or provider/model-id "
            "(see `specstress models discovered`)"
        )
    if len(found) > 1:
        raise InputError(f"{ident!r} names {len(found)} discovered models; use provider/model-id")
    return found[0]


async def estimate_model(config: Config, model: ModelConfig) -> Estimate:
    """What backfilling `model` over the stored scenarios would cost."""
    async with database(config) as engine:
        return await estimate_backfill(engine, config, model)


async def add_discovered(
    config: Config, ident: str
) -> tuple[discoveries.Discovered, Estimate, bool]:
    """Register a proposed discovered model by hand (a person's decision: no budget check);
    returns it, its estimate and whether it was registered now."""
    row = await find_discovered(config, ident)
    if row.status != "proposed" or row.entry is None:
        raise InputError(
            f"{row.provider}/{row.model_id} is {row.status}, not proposed"
            + (f" ({row.note})" if row.note else "")
        )
    model = ModelConfig.model_validate(row.entry)
    async with database(config) as engine, bus(config) as client:
        estimate = await estimate_backfill(engine, config, model)
        js = client.jetstream()

        async def emit(event: Event) -> None:
            await publish(js, event)

        done = await register_discovered(
            engine, emit, row, note="registered by hand", estimate=estimate
        )
    return row, estimate, done


async def compare_models(config: Config, key: str, against: str | None = None) -> Comparison:
    """The release comparison of `key`, computed from the facts as they are now."""
    async with database(config) as engine:
        try:
            return await compare(engine, config, key, against)
        except KeyError as exc:
            raise InputError(f"model {exc.args[0]!r} is not registered") from None
