"""The runtime every stage shares: a FastStream app with one pull subscriber per consumed event.

A stage registers plain handlers `async def handle(stage: Stage, event: SomeEvent) -> None`.
The runtime parses the event, runs the handler and then acks (ack last), so a crash anywhere
leads to a redelivery that the handler's lookup-before-call turns into a cheap re-publish.
Failures are sorted here, once, for every stage:
- a payload that does not parse, that holds text Postgres cannot store (a NUL, invalid UTF-8, a
  lone surrogate from a JSON escape), a terminal LLM error, or a write the database can never
  take (invalid bytes, oversize) is recorded as a dead letter at once: it would fail the same
  way on every delivery;
- `RetryLater` (a provider's long wait, a distant rate-limit slot, a paused provider, a spent
  budget, an answer coming in a batch job) naks with its delay and is not a failure: each such
  return is recorded in Postgres and subtracted from JetStream's delivery count, whose
  MaxDeliver leaves room for them (max_deliver + max_deferrals), so waiting never
  dead-letters work;
- a handler that fails because Postgres or the stream is unreachable (a restart, a cluster
  electing a leader) waits for it and runs again within the same delivery (up to
  `llm.ledger.hold_seconds`), so an outage spends no deliveries;
- anything else naks with backoff until MaxDeliver, then becomes a dead letter with its reason.
Each dead letter carries a reason code and the completeness unit it holds back; a dead-lettered
answer is announced as responses.abandoned so the classifier goes on without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats.errors
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from prometheus_client import make_asgi_app
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import BusConfig, Config, load_config
from specstress.contracts import Event, ResponseAbandoned, ResponseRequested
from specstress.db import store
from specstress.db.engine import create_engine, database_unreachable
from specstress.errors import InputError, RetryLater
from specstress.llm.errors import LLMError
from specstress.llm.gateway import Gateway
from specstress.llm.redact import RedactSecrets
from specstress.pipeline import deferrals
from specstress.pipeline.bus import Consumer, check_consumers, consumers, publish, servers
from specstress.pipeline.progress import reasons
from specstress.pipeline.progress.reasons import Reason
from specstress.pipeline.prompts import PromptLibrary
from specstress.pipeline.stages import manifest
from specstress.text import bytes_problem, value_problem

__all__ = [
    "FETCH_WAIT_SECONDS",
    "MAX_NAK_DELAY_SECONDS",
    "SERVICE_POOL_SIZE",
    "TERMINAL_LLM_ERRORS",
    "E",
    "Handler",
    "Service",
    "Stage",
    "Unprocessable",
]

log = logging.getLogger("specstress.pipeline.service")
E = TypeVar("E", bound=Event)
Handler = Callable[["Stage", Any], Awaitable[None]]
TERMINAL_LLM_ERRORS = frozenset({"terminal_client", "terminal_quota", "bad_output"})
MAX_NAK_DELAY_SECONDS = 300.0
# how long one fetch waits for a message before asking again
FETCH_WAIT_SECONDS = 2.0
SERVICE_POOL_SIZE = 20
DATABASE_POLL_SECONDS = 1.0
BUS_FIRST_WAIT_SECONDS = 0.5
BUS_MAX_WAIT_SECONDS = 5.0


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
        parser = argparse.ArgumentParser(prog=f"python -m services.{self.name}")
        parser.add_argument("--config", required=True, help="path to the specstress YAML config")
        parser.add_argument("--metrics-port", type=int, help="override the configured port")
        parser.add_argument("--host", default="127.0.0.1", help="metrics bind address")
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            config = load_config(args.config)
        except InputError as exc:
            raise SystemExit(f"error: {exc}") from None
        # one line per HTTP request drowns the service's own log
        logging.getLogger("httpx").setLevel(logging.WARNING)
        redact = RedactSecrets(
            os.environ[env] for env in config.api_key_envs() if env in os.environ
        )
        for log_handler in logging.getLogger().handlers:
            log_handler.addFilter(redact)
        port = args.metrics_port
        if port is None:
            port = manifest(self.name).metrics_port
        asyncio.run(self.serve(config, host=args.host, port=port))

    async def serve(self, config: Config, *, host: str, port: int) -> None:
        # A fixed pool, no overflow: a stage handles dozens of messages at once, and overflow
        # connections, closed on return, cost a new Postgres backend per message under load
        # (the pipeline profile's largest avoidable cost); waiting for a pooled one is cheaper.
        engine = create_engine(config.database_url, pool_size=SERVICE_POOL_SIZE, max_overflow=0)
        gateway = Gateway(
            engine,
            service=self.name,
            budget=config.budget,
            defer_seconds=config.bus.defer_seconds,
            batch=config.batch,
            models=config.models,
            ledger=config.llm.ledger,
        )
        # The broker is the connection, health route and lifecycle; the consumers are pulled
        # by `_pull`, which keeps messages flowing instead of fetching in lockstep batches.
        broker = NatsBroker(servers(config.nats_url), logger=None, max_reconnect_attempts=-1)
        stage_holder: list[Stage] = []
        tasks: list[asyncio.Task[None]] = []

        async def on_startup() -> None:
            await broker.connect()
            js = broker.config.connection_state.stream
            await check_consumers(js, config.bus, self.name)
            await _replay_spill(gateway)
            stage_holder.append(
                Stage(
                    name=self.name,
                    config=config,
                    engine=engine,
                    gateway=gateway,
                    prompts=PromptLibrary(self.name, config.prompts_dir),
                    js=js,
                )
            )
            for consumer in consumers(self.name):
                handle = self._wrap(consumer, self.handlers[consumer.event], stage_holder)
                tasks.append(asyncio.create_task(_pull(js, consumer, config.bus, handle)))
            for task in self.background:
                tasks.append(asyncio.create_task(_periodically(task, stage_holder[0])))
            for loop in self.loops:
                tasks.append(asyncio.create_task(loop(stage_holder[0])))
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

    def _wrap(
        self,
        consumer: Consumer,
        handler: Handler,
        stage_holder: list[Stage],
    ) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        subject = consumer.event.subject
        service = self.name

        async def consume(raw: Msg) -> None:
            stage = stage_holder[0]
            delivered = raw.metadata.num_delivered or 1
            bus = stage.config.bus
            sequence = raw.metadata.sequence.stream
            deferred = (
                await deferrals.deferrals(stage.engine, consumer.durable, sequence)
                if delivered > 1
                else 0
            )
            # this delivery's number among those that were not deferrals
            attempt = delivered - deferred
            last_delivery = delivered >= bus.max_deliver + bus.max_deferrals
            started = time.perf_counter()
            heartbeat = asyncio.create_task(_keep_alive(raw, bus.ack_wait_seconds))
            poison = _poison(consumer.event, raw.data)
            if isinstance(poison, Reason):
                heartbeat.cancel()
                await _dead_letter(stage, consumer, raw, delivered, poison, None)
                metrics.messages_handled.labels(service, subject, "invalid").inc()
                return
            event = poison
            if attempt > bus.max_deliver:
                # earlier deliveries ended without a word: the worker died or stalled past
                # AckWait each time, so running the handler again is not worth it
                await _dead_letter(
                    stage,
                    consumer,
                    raw,
                    delivered,
                    Reason(
                        "stalled", f"gave up after {attempt - 1} deliveries that did not finish"
                    ),
                    event,
                )
                heartbeat.cancel()
                return
            try:
                await _handle(stage, handler, event)
            except RetryLater as exc:
                if last_delivery:
                    code = "budget_exhausted" if exc.cause == "budget" else "deferred_too_long"
                    message = f"deferred {deferred + 1} times, last because: {exc}"
                    await _dead_letter(
                        stage, consumer, raw, delivered, Reason(code, message[:300]), event
                    )
                    return
                await _defer(stage, consumer.durable, raw, exc)
                return
            except Unprocessable as exc:
                metrics.handler_failures.labels(service, "unprocessable").inc()
                reason = Reason("unprocessable", f"unprocessable: {exc}"[:300])
                await _dead_letter(stage, consumer, raw, delivered, reason, event)
                return
            except LLMError as exc:
                metrics.handler_failures.labels(service, f"llm_{exc.error_class}").inc()
                if (
                    exc.error_class in TERMINAL_LLM_ERRORS
                    or attempt >= bus.max_deliver
                    or last_delivery
                ):
                    reason = reasons.from_llm_error(exc)
                    await _dead_letter(stage, consumer, raw, delivered, reason, event)
                    return
                await raw.nak(delay=_backoff(attempt, exc.retry_after))
                return
            except Exception as exc:
                metrics.handler_failures.labels(service, type(exc).__name__).inc()
                log.exception("%s: handler failed on %s (delivery %d)", service, subject, delivered)
                reason = reasons.from_exception(exc)
                if (
                    reason.code in reasons.TERMINAL_CODES
                    or attempt >= bus.max_deliver
                    or last_delivery
                ):
                    await _dead_letter(stage, consumer, raw, delivered, reason, event)
                    return
                await raw.nak(delay=_backoff(attempt, None))
                return
            finally:
                heartbeat.cancel()
                metrics.handler_latency.labels(service, subject).observe(
                    time.perf_counter() - started
                )
            await raw.ack()
            if deferred:
                await deferrals.forget_deferrals(stage.engine, consumer.durable, sequence)
            metrics.messages_handled.labels(service, subject, "ok").inc()

        return consume


def _poison(kind: type[E], data: bytes) -> E | Reason:
    """The event in `data`, or why it can never be handled (payload text stays out of it).

    The standard JSON parser looks first: it reads the NUL and lone surrogate escapes that the
    event parser would pass on to Postgres, or reject as mere invalid JSON.
    """
    problem = bytes_problem(data)
    if problem is None:
        # not JSON at all: the event parser says where
        with contextlib.suppress(ValueError):
            problem = value_problem(json.loads(data))
    if problem is not None:
        return Reason("invalid_bytes", f"invalid_bytes: {problem}"[:300])
    try:
        return kind.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        return Reason("invalid_payload", f"invalid payload: {where}: {first['msg']}"[:300])


def _backoff(attempt: int, floor: float | None) -> float:
    delay = random.uniform(0, min(60.0, 1.0 * 2**attempt))
    return max(delay, floor or 0.0)


async def _defer(stage: Stage, consumer_name: str, raw: Msg, wait: RetryLater) -> None:
    """Put the message back for the wait's delay; recorded so it is not counted as a failure."""
    reason = str(wait)
    await deferrals.record_deferral(
        stage.engine, consumer_name, raw.metadata.sequence.stream, reason
    )
    metrics.messages_deferred.labels(stage.name, wait.cause).inc()
    # every message of a batch-mode stage waits like this, often: not news worth a line each
    level = logging.DEBUG if wait.cause == "batch" else logging.INFO
    log.log(level, "%s: deferred for %.0f s: %s", stage.name, wait.delay, reason[:300])
    await raw.nak(delay=min(max(wait.delay, 0.0), MAX_NAK_DELAY_SECONDS))


async def _dead_letter(  # noqa: PLR0917 (one call shape for six call sites)
    stage: Stage,
    consumer: Consumer,
    raw: Msg,
    delivered: int,
    reason: Reason,
    event: Event | None,
) -> None:
    """Record the message with its reason, tell the stages that wait on its unit, then ack it
    so it stops being redelivered."""
    progress_stage, unit = reasons.unit_of(stage.name, consumer.event, event)
    dead_letter_id = await store.record_dead_letter(
        stage.engine,
        consumer=consumer.durable,
        subject=raw.subject,
        stream_sequence=raw.metadata.sequence.stream,
        deliveries=delivered,
        reason=reason.message,
        reason_code=reason.code,
        stage=progress_stage,
        unit=unit,
        payload=raw.data.decode(errors="replace"),
    )
    metrics.dead_letters.labels(stage.name, raw.subject).inc()
    metrics.dead_letters_by_reason.labels(progress_stage, reason.code).inc()
    log.warning(
        "%s: dead letter on %s (%s): %s", stage.name, raw.subject, reason.code, reason.message
    )
    if isinstance(event, ResponseRequested) and reason.code != "unprocessable":
        # the classifier's join would otherwise wait for its straggler sweep (a request that
        # names no known scenario or model holds nothing back)
        await stage.emit(
            ResponseAbandoned(
                scenario_id=event.scenario_id,
                model_key=event.model_key,
                reason_code=reason.code,
                dead_letter_id=dead_letter_id,
            )
        )
    await raw.ack()
    await deferrals.forget_deferrals(stage.engine, consumer.durable, raw.metadata.sequence.stream)


async def _replay_spill(gateway: Gateway) -> None:
    """Answers paid for while Postgres was away, before new work; if it is still away, the
    gateway replays them before its first paid call instead."""
    try:
        await gateway.paid.replay()
    except Exception as exc:
        if not database_unreachable(exc):
            raise
        log.warning("spilled answers not replayed yet (database unreachable): %s", exc)


async def _handle(stage: Stage, handler: Handler, event: Event) -> None:
    """Run the handler; while Postgres or the stream is unreachable, wait for it and run it
    again in this same delivery (handlers look up before they call, so a rerun repeats no
    paid work), up to the ledger's hold time, rather than spend deliveries on an outage."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stage.config.llm.ledger.hold_seconds
    pause = BUS_FIRST_WAIT_SECONDS
    while True:
        try:
            await handler(stage, event)
            return
        except Exception as exc:
            outage = _outage(exc)
            if outage is None or loop.time() >= deadline:
                raise
            log.warning("%s: %s unreachable (%s); waiting for it", stage.name, outage, exc)
        if outage == "database":
            await _wait_for_database(stage.engine, deadline)
        else:
            # a cluster electing a stream leader answers again within seconds
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(2 * pause, BUS_MAX_WAIT_SECONDS)


def _outage(error: BaseException) -> str | None:
    """ "database" or "stream" when `error` says that one could not be reached, else None."""
    if isinstance(error, nats.errors.Error):
        # no stream leader, nobody answering, or the connection is being re-made
        transient = (NoStreamResponseError, nats.errors.NoRespondersError,
                     nats.errors.TimeoutError, nats.errors.ConnectionClosedError,
                     nats.errors.ConnectionReconnectingError, ServiceUnavailableError)  # fmt: skip
        return "stream" if isinstance(error, transient) else None
    return "database" if database_unreachable(error) else None


async def _wait_for_database(engine: AsyncEngine, until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        if await _database_answers(engine):
            return
        await asyncio.sleep(DATABASE_POLL_SECONDS)


async def _database_answers(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        if database_unreachable(exc):
            return False
        raise
    return True


async def _pull(
    js: JetStreamContext,
    consumer: Consumer,
    bus: BusConfig,
    handle: Callable[[Msg], Coroutine[Any, Any, None]],
) -> None:
    """Keep up to `bus.fetch_batch` messages of one consumer in hand, each in its own task.

    A slot is refilled as soon as its message is done, so one slow call does not hold back
    the rest of a fetched batch (with LLM latencies that differ tenfold, a batch barrier would
    leave most slots idle). Acking stays the handler's last step.
    """
    subscription = await js.pull_subscribe_bind(consumer.durable, stream=bus.stream)
    slots = asyncio.Semaphore(bus.fetch_batch)
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: handler crashed", consumer.durable, exc_info=task.exception())

    try:
        while True:
            await slots.acquire()
            wanted = 1
            while wanted < bus.fetch_batch and not slots.locked():
                await slots.acquire()  # free at once: never waits
                wanted += 1
            try:
                messages = await subscription.fetch(wanted, timeout=FETCH_WAIT_SECONDS)
            except TimeoutError:  # nothing to fetch (nats-py raises its own or asyncio's)
                messages = []
            except (nats.errors.Error, OSError) as exc:
                # the client reconnects on its own; the unacked messages come back after AckWait
                log.warning("%s: fetch failed: %s: %s", consumer.durable, type(exc).__name__, exc)
                messages = []
                await asyncio.sleep(1.0)
            for _ in range(wanted - len(messages)):
                slots.release()
            for message in messages:
                task = asyncio.create_task(handle(message))
                running.add(task)
                task.add_done_callback(finished)
    finally:
        if running:
            await asyncio.wait(running, timeout=bus.ack_wait_seconds)
        await subscription.unsubscribe()


async def _keep_alive(raw: Msg, ack_wait: float) -> None:
    """Tell JetStream a long handler is still working, so AckWait can stay short: a message
    held by a process that died is redelivered after AckWait, not after the longest LLM call."""
    while True:
        await asyncio.sleep(ack_wait / 3)
        await raw.in_progress()


async def _periodically(task: Callable[[Stage], Awaitable[None]], stage: Stage) -> None:
    interval = 30.0
    while True:
        await asyncio.sleep(interval)
        try:
            await task(stage)
        except Exception:
            log.exception("%s: periodic task %s failed", stage.name, task.__name__)
