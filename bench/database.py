"""A private Postgres for one benchmark run: a temporary folder, the server, a migrated database."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from specstress.db.migrate import upgrade
from specstress.local.servers import ensure_database, start_postgres


@dataclass(frozen=True)
class Scratch:
    folder: Path
    database_url: str


@asynccontextmanager
async def private_database(name: str, *, keep: bool = False) -> AsyncIterator[Scratch]:
    """A new folder with a Postgres in it and a database `bench` at the schema's head; the server
    stops on the way out, and the folder goes too unless `keep` (a run's logs stay to read)."""
    folder = Path(tempfile.mkdtemp(prefix=f"specstress-bench-{name}-"))
    os.chmod(folder, 0o711)  # the private Postgres runs as another user and must enter it
    postgres = start_postgres(folder / "postgres")
    try:
        database_url = await ensure_database(postgres.url, "bench")
        await upgrade(database_url)
        yield Scratch(folder, database_url)
    finally:
        postgres.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
