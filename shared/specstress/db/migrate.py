"""Apply the versioned schema migrations (Alembic) to a database."""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig

from specstress.db.engine import async_url


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(resources.files("specstress.db") / "migrations"))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


async def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the schema to `revision`; safe to run again (already-applied steps are skipped)."""
    # Alembic's async env runs its own event loop, so it gets a worker thread.
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)
