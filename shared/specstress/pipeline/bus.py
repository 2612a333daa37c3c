"""The JetStream topology: one stream, one durable pull consumer per (service, event), publishing.

`ensure_topology` is idempotent and applies changed consumer settings explicitly, because a
durable consumer keeps its old config when a service restarts with new settings. It runs in
`specstress init` (the topology's owner); a service only checks that its consumers exist, so
its NATS user needs no right to change the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from specstress.config import BusConfig
from specstress.contracts import SUBJECT_PREFIX, Event
from specstress.errors import InputError
from specstress.pipeline.stages import CLI_PUBLISHES, STAGES

__all__ = [
    "PUBLISHES",
    "SUBSCRIPTIONS",
    "Consumer",
    "backlog",
    "check_consumers",
    "connect",
    "consumers",
    "ensure_topology",
    "publish",
    "stream_config",
]

# Which events each service consumes and each component publishes, from the stage table. With
# SUBSCRIPTIONS, PUBLISHES is the source of the NATS allow-lists (specstress.pipeline.nats_auth).
SUBSCRIPTIONS: dict[str, tuple[type[Event], ...]] = {s.name: s.consumes for s in STAGES}
PUBLISHES: dict[str, tuple[type[Event], ...]] = {
    "cli": CLI_PUBLISHES,
    **{s.name: s.publishes for s in STAGES},
}


@dataclass(frozen=True)
class Consumer:
    service: str
    event: type[Event]

    @property
    def durable(self) -> str:
        # e.g. responder__scenarios_created; consumer names may not contain dots
        token = self.event.subject.removeprefix(f"{SUBJECT_PREFIX}.").replace(".", "_")
        return f"{self.service}__{token}"

    def config(self, bus: BusConfig) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.event.subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            # the runtime dead-letters after max_deliver failures; deferrals (waits) come on top
            max_deliver=bus.max_deliver + bus.max_deferrals,
            ack_wait=bus.ack_wait_seconds,
            max_ack_pending=bus.ack_pending,
        )


def consumers(service: str | None = None) -> list[Consumer]:
    services = [service] if service else list(SUBSCRIPTIONS)
    return [Consumer(s, event) for s in services for event in SUBSCRIPTIONS[s]]


def stream_config(bus: BusConfig) -> StreamConfig:
    return StreamConfig(
        name=bus.stream,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        duplicate_window=bus.duplicate_window_seconds,
        num_replicas=bus.replicas,
    )


def servers(url: str) -> list[str]:
    """The server URLs of `nats_url`: one, or a cluster's nodes joined by commas."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, name: str) -> NatsClient:
    return await nats.connect(
        servers(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=1
    )


async def ensure_topology(js: JetStreamContext, bus: BusConfig) -> None:
    """Create or update the stream and every consumer; safe to run any number of times."""
    wanted = stream_config(bus)
    try:
        await js.stream_info(bus.stream)
        await js.update_stream(wanted)
    except NotFoundError:
        await js.add_stream(wanted)
    for consumer in consumers():
        # without an explicit action the server creates the consumer or updates its settings
        await js.add_consumer(bus.stream, consumer.config(bus))


async def check_consumers(js: JetStreamContext, bus: BusConfig, service: str) -> None:
    """Raise InputError unless every consumer of `service` exists on the stream."""
    for consumer in consumers(service):
        try:
            await js.consumer_info(bus.stream, consumer.durable)
        except NotFoundError:
            raise InputError(
                f"consumer {consumer.durable} on stream {bus.stream} does not exist: "
                "run `specstress init` with this config first"
            ) from None


async def publish(js: JetStreamContext, event: Event) -> bool:
    """Publish with a deterministic Nats-Msg-Id; returns True when the stream kept it as new."""
    ack = await js.publish(
        event.subject,
        event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": event.message_id()},
    )
    return not ack.duplicate


async def backlog(js: JetStreamContext, bus: BusConfig) -> dict[str, tuple[int, int]]:
    """Per durable: (messages not yet delivered, messages delivered but not acked)."""
    result: dict[str, tuple[int, int]] = {}
    for consumer in consumers():
        info = await js.consumer_info(bus.stream, consumer.durable)
        result[consumer.durable] = (info.num_pending or 0, info.num_ack_pending or 0)
    return result
