"""Shared fixtures: one Postgres per session with a fresh database per test, and a fresh NATS
per test. NATS_URL / DATABASE_URL point them at servers of your own instead.

Every test gets one tier marker (see tests/README.md): the whole-system folders name their own
tier; elsewhere a test that uses the servers below is `integration`, any other is `unit`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.engine import create_engine
from specstress.local.servers import (
    Infra,
    env_nats_url,
    pid_alive,
    resolve_infra,
    start_nats,
    stop_servers_under,
)
from tests.support.database import fresh_database
from tests.support.simulator import served_simulator

_PREFIX = "specstress-test-"
_OWNER = "owner.pid"

# the folders that test the whole system, each a tier (and a marker) of its own
SYSTEM_TIERS = frozenset({"e2e", "faults", "ops"})
# the fixtures that bring up Postgres or NATS
INFRASTRUCTURE = frozenset({"infra", "database_url", "nats_url", "server_tmp_path"})
TESTS = Path(__file__).parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop servers left by earlier runs that were killed before their teardown ran."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = int((folder / _OWNER).read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(owner):
            stop_servers_under(folder)
            shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in SYSTEM_TIERS:
            item.add_marker(folder)
        elif item.get_closest_marker("integration") is None:
            fixtures = item.fixturenames if isinstance(item, pytest.Function) else ()
            uses_servers = not INFRASTRUCTURE.isdisjoint(fixtures)
            item.add_marker("integration" if uses_servers else "unit")


@contextmanager
def _server_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is 0700, and as root Postgres runs as another user.
    with tempfile.TemporaryDirectory(prefix=_PREFIX, ignore_cleanup_errors=True) as name:
        folder = Path(name)
        folder.chmod(0o711)  # others may enter, not list
        (folder / _OWNER).write_text(str(os.getpid()))
        yield folder


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """Like tmp_path, but usable by a private Postgres, and swept if the run is killed."""
    with _server_dir() as folder:
        yield folder


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with _server_dir() as state_dir, resolve_infra(state_dir) as resolved:
        yield resolved


@pytest.fixture
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh database with the project's schema, dropped after the test."""
    async with fresh_database(infra) as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(database_url, pool_size=4)
    yield created
    await created.dispose()


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    """The simulator in this process; it refuses a call without a key, so a call that succeeds
    proves the client sent its key where the protocol wants it."""
    async with served_simulator(require_key=True) as url:
        yield url


@pytest.fixture
async def nats_url() -> AsyncIterator[str]:
    """A fresh private nats-server, or NATS_URL emptied of the SPECSTRESS* streams."""
    shared = env_nats_url()
    if shared is None:
        with _server_dir() as folder, start_nats(folder) as server:
            yield server.url
        return
    client = await nats.connect(shared)
    try:
        js = client.jetstream()
        for stream in await js.streams_info():
            if stream.config.name and stream.config.name.startswith("SPECSTRESS"):
                await js.delete_stream(stream.config.name)
    finally:
        await client.close()
    yield shared
