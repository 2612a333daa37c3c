"""The delivery policy every stage shares: how messages are pulled, handled, acked or put back.

`pull` keeps a consumer's messages flowing to `deliver`, which parses each event, runs the
handler and then acks (ack last), so a crash anywhere leads to a redelivery that the handler's
lookup-before-call turns into a cheap re-publish. Failures are sorted here, once, for every stage:
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

import asyncio
import contextlib
import json
import logging
import random
import time

import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.contracts import Event, ResponseAbandoned, ResponseRequested
from specstress.db import store
from specstress.db.engine import database_unreachable
from specstress.errors import RetryLater, first_problem
from specstress.llm.errors import LLMError
from specstress.pipeline import deferrals
from specstress.pipeline.bus import Consumer
from specstress.pipeline.progress import reasons
from specstress.pipeline.progress.reasons import Reason
from specstress.pipeline.stage import E, Handler, Stage, Unprocessable
from specstress.text import bytes_problem, value_problem

__all__ = [
    "FETCH_WAIT_SECONDS",
    "MAX_NAK_DELAY_SECONDS",
    "TERMINAL_LLM_ERRORS",
    "backoff",
    "dead_letter",
    "defer",
    "deliver",
    "keep_alive",
    "outage",
    "parse",
    "pull",
    "run_through_outages",
]

log = logging.getLogger("specstress.pipeline.delivery")
TERMINAL_LLM_ERRORS = frozenset({"terminal_client", "terminal_quota", "bad_output"})
MAX_NAK_DELAY_SECONDS = 300.0
# how long one fetch waits for a message before asking again
FETCH_WAIT_SECONDS = 2.0
DATABASE_POLL_SECONDS = 1.0
BUS_FIRST_WAIT_SECONDS = 0.5
BUS_MAX_WAIT_SECONDS = 5.0


async def pull(stage: Stage, consumer: Consumer, handler: Handler) -> None:
    """Keep up to `bus.target_in_flight` messages of one consumer in hand, each in its own task.

    A slot is refilled as soon as its message is done, so one slow call does not hold back
    the rest of a fetched batch (with LLM latencies that differ tenfold, a batch barrier would
    leave most slots idle). Acking stays the handler's last step.
    """
    bus = stage.config.bus
    subscription = await stage.js.pull_subscribe_bind(consumer.durable, stream=bus.stream)
    slots = asyncio.Semaphore(bus.target_in_flight)
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
            while wanted < bus.target_in_flight and not slots.locked():
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
                task = asyncio.create_task(deliver(stage, consumer, handler, message))
                running.add(task)
                task.add_done_callback(finished)
    finally:
        if running:
            await asyncio.wait(running, timeout=bus.ack_wait_seconds)
        await subscription.unsubscribe()


async def deliver(stage: Stage, consumer: Consumer, handler: Handler, raw: Msg) -> None:
    """Handle one delivery of one message and settle it: ack, nak, defer or dead-letter."""
    subject = consumer.event.subject
    delivered = raw.metadata.num_delivered or 1
    bus = stage.config.bus
    sequence = raw.metadata.sequence.stream
    deferred = (
        await deferrals.deferrals(stage.engine, consumer.durable, sequence) if delivered > 1 else 0
    )
    # this delivery's number among those that were not deferrals
    attempt = delivered - deferred
    last_delivery = delivered >= bus.max_deliver + bus.max_deferrals
    started = time.perf_counter()
    heartbeat = asyncio.create_task(keep_alive(raw, bus.ack_wait_seconds))
    parsed = parse(consumer.event, raw.data)
    if isinstance(parsed, Reason):
        heartbeat.cancel()
        await dead_letter(stage, consumer, raw, delivered, parsed, None)
        metrics.messages_handled.labels(stage.name, subject, "invalid").inc()
        return
    event = parsed
    if attempt > bus.max_deliver:
        # earlier deliveries ended without a word: the worker died or stalled past
        # AckWait each time, so running the handler again is not worth it
        await dead_letter(
            stage,
            consumer,
            raw,
            delivered,
            Reason("stalled", f"gave up after {attempt - 1} deliveries that did not finish"),
            event,
        )
        heartbeat.cancel()
        return
    try:
        await run_through_outages(stage, handler, event)
    except RetryLater as exc:
        if last_delivery:
            code = "budget_exhausted" if exc.cause == "budget" else "deferred_too_long"
            message = f"deferred {deferred + 1} times, last because: {exc}"
            await dead_letter(stage, consumer, raw, delivered, Reason(code, message[:300]), event)
            return
        await defer(stage, consumer.durable, raw, exc)
        return
    except Unprocessable as exc:
        metrics.handler_failures.labels(stage.name, "unprocessable").inc()
        reason = Reason("unprocessable", f"unprocessable: {exc}"[:300])
        await dead_letter(stage, consumer, raw, delivered, reason, event)
        return
    except LLMError as exc:
        metrics.handler_failures.labels(stage.name, f"llm_{exc.error_class}").inc()
        if exc.error_class in TERMINAL_LLM_ERRORS or attempt >= bus.max_deliver or last_delivery:
            reason = reasons.from_llm_error(exc)
            await dead_letter(stage, consumer, raw, delivered, reason, event)
            return
        await raw.nak(delay=backoff(attempt, exc.retry_after))
        return
    except Exception as exc:
        metrics.handler_failures.labels(stage.name, type(exc).__name__).inc()
        log.exception("%s: handler failed on %s (delivery %d)", stage.name, subject, delivered)
        reason = reasons.from_exception(exc)
        if reason.code in reasons.TERMINAL_CODES or attempt >= bus.max_deliver or last_delivery:
            await dead_letter(stage, consumer, raw, delivered, reason, event)
            return
        await raw.nak(delay=backoff(attempt, None))
        return
    finally:
        heartbeat.cancel()
        metrics.handler_latency.labels(stage.name, subject).observe(time.perf_counter() - started)
    await raw.ack()
    if deferred:
        await deferrals.forget_deferrals(stage.engine, consumer.durable, sequence)
    metrics.messages_handled.labels(stage.name, subject, "ok").inc()


def parse(kind: type[E], data: bytes) -> E | Reason:
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
        problem = first_problem(exc, "payload")
        return Reason("invalid_payload", f"invalid payload: {problem}"[:300])


def backoff(attempt: int, floor: float | None) -> float:
    """A full-jitter delay for the next try, at least `floor` (a provider's retry-after)."""
    delay = random.uniform(0, min(60.0, 1.0 * 2**attempt))
    return max(delay, floor or 0.0)


async def defer(stage: Stage, consumer_name: str, raw: Msg, wait: RetryLater) -> None:
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


async def dead_letter(  # noqa: PLR0917 (one call shape for six call sites)
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


async def run_through_outages(stage: Stage, handler: Handler, event: Event) -> None:
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
            unreachable = outage(exc)
            if unreachable is None or loop.time() >= deadline:
                raise
            log.warning("%s: %s unreachable (%s); waiting for it", stage.name, unreachable, exc)
        if unreachable == "database":
            await _wait_for_database(stage.engine, deadline)
        else:
            # a cluster electing a stream leader answers again within seconds
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(2 * pause, BUS_MAX_WAIT_SECONDS)


def outage(error: BaseException) -> str | None:
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


async def keep_alive(raw: Msg, ack_wait: float) -> None:
    """Tell JetStream a long handler is still working, so AckWait can stay short: a message
    held by a process that died is redelivered after AckWait, not after the longest LLM call."""
    while True:
        await asyncio.sleep(ack_wait / 3)
        await raw.in_progress()
