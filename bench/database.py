"""Private servers for one benchmark run: a temporary folder with a Postgres (and NATS) in it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from specstress.db.migrate import upgrade
from specstress.local.servers import ManagedServer, ensure_database, start_nats, start_postgres


@dataclass(frozen=True)
class Scratch:
    folder: Path
    database_url: str


@dataclass(frozen=True)
class Servers:
    folder: Path
    nats: ManagedServer
    database_url: str

    @property
    def env(self) -> dict[str, str]:
        """What the pipeline's processes read to find the servers."""
        return {"NATS_URL": self.nats.url, "DATABASE_URL": self.database_url}


def _private_folder(name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"specstress-bench-{name}-"))
    os.chmod(folder, 0o711)  # the private Postgres runs as another user and must enter it
    return folder


@asynccontextmanager
async def private_database(name: str, *, keep: bool = False) -> AsyncIterator[Scratch]:
    """A new folder with a Postgres in it and a database `bench` at the schema's head; the server
    stops on the way out, and the folder goes too unless `keep` (a run's logs stay to read)."""
    folder = _private_folder(name)
    postgres = start_postgres(folder / "postgres")
    try:
        database_url = await ensure_database(postgres.url, "bench")
        await upgrade(database_url)
        yield Scratch(folder, database_url)
    finally:
        postgres.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def private_servers(name: str) -> AsyncIterator[Servers]:
    """A new folder with NATS and Postgres in it and an empty database `bench`, both named in
    this process's environment (NATS_URL, DATABASE_URL) for the stack it starts. The servers
    stop on the way out; the folder stays with the run's logs."""
    folder = _private_folder(name)
    nats = start_nats(folder / "nats")
    postgres = start_postgres(folder / "postgres")
    try:
        database_url = await ensure_database(postgres.url, "bench")
        servers = Servers(folder, nats, database_url)
        os.environ.update(servers.env)
        yield servers
    finally:
        postgres.stop()
        nats.stop()
