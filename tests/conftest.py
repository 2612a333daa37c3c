"""Shared fixtures: one Postgres per session with a fresh database per test, and a fresh NATS
per test. NATS_URL / DATABASE_URL point them at servers of your own instead."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from specstress.db.migrate import upgrade
from specstress.servers import (
    Infra,
    drop_database,
    ensure_database,
    env_nats_url,
    resolve_infra,
    start_nats,
)


def _server_reachable_dir() -> tempfile.TemporaryDirectory[str]:
    # pytest's tmp_path lives under a 0700 folder of ours; as root, Postgres runs as another
    # user, who must be able to enter the folder (0711: enter, not list).
    folder = tempfile.TemporaryDirectory(prefix="specstress-test-", ignore_cleanup_errors=True)
    os.chmod(folder.name, 0o711)
    return folder


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """Like tmp_path, but a private Postgres running as another user can use it too."""
    with _server_reachable_dir() as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with _server_reachable_dir() as state_dir, resolve_infra(Path(state_dir)) as resolved:
        yield resolved


@pytest.fixture
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh database with the project's schema, dropped after the test."""
    name = f"t_{secrets.token_hex(8)}"
    url = await ensure_database(infra.database_url, name)
    try:
        await upgrade(url)
        yield url
    finally:
        await drop_database(infra.database_url, name)


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh private nats-server, or NATS_URL emptied of the SPECSTRESS* streams."""
    shared = env_nats_url()
    if shared is None:
        with start_nats(tmp_path / "nats") as server:
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
