"""The service app every stage runs: a FastStream app with one pull loop per consumed event.

A stage's `app.py` makes a `Service`, registers its handlers (`handles`), periodic tasks
(`every`) and long-running loops (`runs`), and calls `main`. `serve` builds what the handlers
share (the database engine, the LLM gateway, the bus connection: the `Stage` of
`specstress.pipeline.stage`), checks the stage's consumers, hands each to the delivery policy
(`specstress.pipeline.delivery.pull`), serves /metrics and /healthz, and on shutdown lets the
running handlers finish before it closes what it opened.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.nats import NatsBroker
from prometheus_client import make_asgi_app

from specstress.config import BusConfig, Config
from specstress.contracts import Event
from specstress.db.engine import create_engine, database_unreachable
from specstress.llm.gateway import Gateway
from specstress.pipeline import eventloop, process
from specstress.pipeline.bus import check_consumers, consumers, servers
from specstress.pipeline.delivery import pull
from specstress.pipeline.prompts import PromptLibrary
from specstress.pipeline.stage import E, Handler, Stage
from specstress.pipeline.stages import manifest

__all__ = ["Service", "http_connections", "pool_size"]

log = logging.getLogger("specstress.pipeline.service")
# A handler holds a connection only for its queries, a small share of its time in hand, so one
# connection serves many handlers; the cap keeps every process of a fleet within the server's
# max_connections (400 for the private servers). The coalesced lookups and writes, most of the
# statements, run on connections of their own beside this pool (`specstress.db.direct`).
HANDLERS_PER_CONNECTION = 16
MIN_POOL_SIZE = 10
MAX_POOL_SIZE = 40


def pool_size(bus: BusConfig) -> int:
    """Postgres connections of one service process for the bus's in-flight target."""
    wanted = math.ceil(bus.target_in_flight / HANDLERS_PER_CONNECTION)
    return min(MAX_POOL_SIZE, max(MIN_POOL_SIZE, wanted))


def http_connections(bus: BusConfig, service: str) -> int:
    """The gateway's HTTP connections in one process of `service`: each message in hand makes
    at most one call at a time (the models' `max_concurrency` may cap them lower)."""
    return bus.target_in_flight * len(consumers(service))


@dataclass
class Service:
    name: str
    handlers: dict[type[Event], Handler] = field(default_factory=dict)
    background: list[Callable[[Stage], Awaitable[None]]] = field(default_factory=list)
    loops: list[Callable[[Stage], Coroutine[Any, Any, None]]] = field(default_factory=list)

    def handles(self, event: type[E]) -> Callable[[Callable[[Stage, E], Awaitable[None]]], Any]:
        def register(fn: Callable[[Stage, E], Awaitable[None]]) -> Any:
            self.handlers[event] = fn
            return fn

        return register

    def every(self, fn: Callable[[Stage], Awaitable[None]]) -> Callable[[Stage], Awaitable[None]]:
        """Register a periodic task (e.g. a reconciler) that runs while the service runs."""
        self.background.append(fn)
        return fn

    def runs(
        self, fn: Callable[[Stage], Coroutine[Any, Any, None]]
    ) -> Callable[[Stage], Coroutine[Any, Any, None]]:
        """Register a task that keeps its own schedule for as long as the service runs."""
        self.loops.append(fn)
        return fn

    def main(self, argv: list[str] | None = None) -> None:
        arguments = process.parser(f"python -m services.{self.name}")
        arguments.add_argument("--metrics-port", type=int, help="override the configured port")
        arguments.add_argument("--host", default="127.0.0.1", help="metrics bind address")
        args = arguments.parse_args(argv)
        config = process.configure(args.config)
        port = args.metrics_port
        if port is None:
            port = manifest(self.name).metrics_port
        process.settle_garbage_collector()
        eventloop.run(self.serve(config, host=args.host, port=port))

    async def serve(self, config: Config, *, host: str, port: int) -> None:
        # A fixed pool, no overflow: a stage handles dozens of messages at once, and overflow
        # connections, closed on return, cost a new Postgres backend per message under load
        # (the pipeline profile's largest avoidable cost); waiting for a pooled one is cheaper.
        engine = create_engine(config.database_url, pool_size=pool_size(config.bus), max_overflow=0)
        gateway = Gateway(
            engine,
            service=self.name,
            budget=config.budget,
            defer_seconds=config.bus.defer_seconds,
            batch=config.batch,
            models=config.models,
            ledger=config.llm.ledger,
            max_connections=http_connections(config.bus, self.name),
        )
        # The broker is the connection, health route and lifecycle; the consumers are pulled
        # by `delivery.pull`, which keeps messages flowing instead of fetching in lockstep
        # batches.
        broker = NatsBroker(servers(config.nats_url), logger=None, max_reconnect_attempts=-1)
        tasks: list[asyncio.Task[None]] = []

        async def on_startup() -> None:
            await broker.connect()
            js = broker.config.connection_state.stream
            await check_consumers(js, config.bus, self.name)
            await _replay_spill(gateway)
            stage = Stage(
                name=self.name,
                config=config,
                engine=engine,
                gateway=gateway,
                prompts=PromptLibrary(self.name, config.prompts_dir),
                js=js,
            )
            for consumer in consumers(self.name):
                handler = self.handlers[consumer.event]
                tasks.append(asyncio.create_task(pull(stage, consumer, handler)))
            for task in self.background:
                tasks.append(asyncio.create_task(_periodically(task, stage)))
            for loop in self.loops:
                tasks.append(asyncio.create_task(loop(stage)))
            if gateway.batches is not None and config.batch.for_stage(self.name) is not None:
                # sends and polls this stage's batch jobs (and finishes those of an earlier
                # run even when batch mode has since been turned off)
                tasks.append(asyncio.create_task(gateway.batches.run()))
            log.info("%s started; metrics on http://%s:%d/metrics", self.name, host, port)

        async def on_shutdown() -> None:
            for task in tasks:
                task.cancel()
            # the pull loops let their running handlers finish (and ack) before they end
            await asyncio.gather(*tasks, return_exceptions=True)
            await gateway.aclose()
            await engine.dispose()

        app = AsgiFastStream(
            broker,
            asgi_routes=[("/metrics", make_asgi_app()), ("/healthz", make_ping_asgi(broker))],
            on_startup=[on_startup],
            on_shutdown=[on_shutdown],
            logger=None,
        )
        await app.run(
            log_level=logging.WARNING,
            run_extra_options={"host": host, "port": port},
        )


async def _replay_spill(gateway: Gateway) -> None:
    """Answers paid for while Postgres was away, before new work; if it is still away, the
    gateway replays them before its first paid call instead."""
    try:
        await gateway.paid.replay()
    except Exception as exc:
        if not database_unreachable(exc):
            raise
        log.warning("spilled answers not replayed yet (database unreachable): %s", exc)


async def _periodically(task: Callable[[Stage], Awaitable[None]], stage: Stage) -> None:
    interval = 30.0
    while True:
        await asyncio.sleep(interval)
        try:
            await task(stage)
        except Exception:
            log.exception("%s: periodic task %s failed", stage.name, task.__name__)
