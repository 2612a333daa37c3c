"""Each NATS user can do its work and nothing else, on the rendered server configuration.

The allow-lists come from bus.SUBSCRIPTIONS and bus.PUBLISHES, so a new consumer or a new
published event is covered here without editing this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from specstress.config import BusConfig
from specstress.contracts import ALL_EVENTS, Event
from specstress.local.secure import Credentials, start_secure_nats
from specstress.pipeline.bus import PUBLISHES, SUBSCRIPTIONS, consumers, ensure_topology
from specstress.pipeline.nats_auth import CLI_USER, INIT_USER, USERS

BUS = BusConfig()
STREAM = BUS.stream
REFUSAL_WAIT_SECONDS = 10.0


class Session:
    """A connection as one user that collects the permission violations the server reports."""

    def __init__(self, client: NatsClient, violations: asyncio.Queue[str]) -> None:
        self.client = client
        self.js = client.jetstream(timeout=2)
        self.violations = violations

    async def refused(self, subject: str, subscribe: bool = False) -> bool:
        """Publish to (or subscribe to) `subject`; True when the server reports a violation
        naming it. The permission is on the subject, so a bare publish stands for any API call
        or event on it, and a refused request needs no wait for its time-out."""
        if subscribe:
            await self.client.subscribe(subject)
        else:
            await self.client.publish(subject, b"{}", reply=self.client.new_inbox())
        await self.client.flush()
        while True:
            try:
                report = await asyncio.wait_for(self.violations.get(), REFUSAL_WAIT_SECONDS)
            except TimeoutError:
                return False
            # nats-py lower-cases the server's report
            if f'"{subject.lower()}"' in report.lower():
                return True


@pytest.fixture
def secure(server_tmp_path: Path) -> Iterator[tuple[str, Credentials]]:
    credentials = Credentials.generate()
    with start_secure_nats(server_tmp_path, credentials, STREAM) as server:
        yield server.url, credentials


@asynccontextmanager
async def session(url: str, credentials: Credentials, user: str) -> AsyncIterator[Session]:
    violations: asyncio.Queue[str] = asyncio.Queue()

    async def on_error(error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            violations.put_nowait(str(error))

    client = await nats.connect(
        credentials.nats_url(url, user), error_cb=on_error, allow_reconnect=False
    )
    try:
        yield Session(client, violations)
    finally:
        await client.close()


def sample(event: type[Event]) -> bytes:
    return f'{{"test": "{event.__name__}"}}'.encode()


def publisher_of(event: type[Event]) -> str:
    return next(user for user, events in PUBLISHES.items() if event in events)


async def test_anonymous_and_wrong_passwords_are_refused(secure: tuple[str, Credentials]) -> None:
    url, credentials = secure
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
    wrong = Credentials.generate()
    for user in USERS:
        with pytest.raises(nats.errors.Error):
            await nats.connect(wrong.nats_url(url, user), allow_reconnect=False)
        client = await nats.connect(credentials.nats_url(url, user), allow_reconnect=False)
        await client.close()


async def test_only_init_changes_the_topology(secure: tuple[str, Credentials]) -> None:
    url, credentials = secure
    async with session(url, credentials, INIT_USER) as init:
        await ensure_topology(init.js, BUS)
        await ensure_topology(init.js, BUS)  # the job runs at every start
        assert await init.refused(f"$JS.API.STREAM.DELETE.{STREAM}")
        for event in ALL_EVENTS:
            assert await init.refused(event.subject)
    for user in [CLI_USER, *SUBSCRIPTIONS]:
        async with session(url, credentials, user) as other:
            assert await other.refused(f"$JS.API.STREAM.CREATE.{STREAM}"), user
            assert await other.refused(f"$JS.API.STREAM.UPDATE.{STREAM}"), user
            assert await other.refused(f"$JS.API.STREAM.DELETE.{STREAM}"), user
            assert await other.refused(f"$JS.API.CONSUMER.CREATE.{STREAM}.intruder"), user


async def test_cli_starts_runs_and_reads_backlogs(secure: tuple[str, Credentials]) -> None:
    url, credentials = secure
    async with session(url, credentials, INIT_USER) as init:
        await ensure_topology(init.js, BUS)
    async with session(url, credentials, CLI_USER) as cli:
        for event in PUBLISHES[CLI_USER]:
            ack = await cli.js.publish(event.subject, sample(event))
            assert ack.stream == STREAM
        for consumer in consumers():
            await cli.js.consumer_info(STREAM, consumer.durable)
        for event in ALL_EVENTS:
            if event not in PUBLISHES[CLI_USER]:
                assert await cli.refused(event.subject)
        assert await cli.refused(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumers()[0].durable}")


@pytest.mark.parametrize("service", list(SUBSCRIPTIONS))
async def test_service_consumes_and_publishes_only_its_own(
    secure: tuple[str, Credentials], service: str
) -> None:
    url, credentials = secure
    async with session(url, credentials, INIT_USER) as init:
        await ensure_topology(init.js, BUS)
    # what the service consumes, published by whoever PUBLISHES says publishes it
    for event in SUBSCRIPTIONS[service]:
        async with session(url, credentials, publisher_of(event)) as producer:
            await producer.js.publish(event.subject, sample(event))

    async with session(url, credentials, service) as own:
        for consumer in consumers(service):
            await own.js.consumer_info(STREAM, consumer.durable)
            pulled = await own.js.pull_subscribe_bind(consumer.durable, STREAM)
            messages = await pulled.fetch(1, timeout=5)
            assert messages[0].data == sample(consumer.event)
            await messages[0].in_progress()
            await messages[0].ack_sync()
            await pulled.unsubscribe()
        for event in PUBLISHES[service]:
            ack = await own.js.publish(event.subject, sample(event))
            assert ack.stream == STREAM

        for event in ALL_EVENTS:
            if event not in PUBLISHES[service]:
                assert await own.refused(event.subject), event.subject
        # other services' consumers: neither their info, their messages nor their acks
        for theirs in consumers():
            if theirs.service != service:
                assert await own.refused(f"$JS.API.CONSUMER.INFO.{STREAM}.{theirs.durable}")
                assert await own.refused(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{theirs.durable}")
                assert await own.refused(f"$JS.ACK.{STREAM}.{theirs.durable}.1.1.1.1.1")
        # reading the stream's subjects directly, around the consumers
        assert await own.refused("specstress.>", subscribe=True)
