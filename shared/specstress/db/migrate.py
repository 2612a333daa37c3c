"""Apply the versioned schema migrations (Alembic) and the current view definitions.

Tables change only through migrations. The analysis views are derived, so their current SQL
lives in one place, `db/views/NN_name.sql` (NN gives the order in which they depend on each
other), and every upgrade to the newest revision replaces them from there. A view whose columns
shrink or change type cannot be replaced in place: drop it in a migration, and the upgrade
creates it again from its file. Old migrations keep the view text of their time, as history.
"""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig

from specstress.db.engine import async_url, create_engine

__all__ = ["alembic_config", "install_views", "upgrade", "view_definitions"]

_PACKAGE = resources.files("specstress.db")
# one migrator at a time when several services start together (the migrations take it too)
_MIGRATION_LOCK = 7201120250001


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(_PACKAGE / "migrations"))
    config.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return config


def view_definitions() -> list[tuple[str, str]]:
    """(view name, its CREATE OR REPLACE VIEW statement) in dependency order."""
    files = sorted(
        (f for f in (_PACKAGE / "views").iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )
    return [(f.name[3:-4], f.read_text(encoding="utf-8")) for f in files]


async def install_views(database_url: str) -> None:
    """Create or replace every analysis view from its file, in one transaction."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            for _name, statement in view_definitions():
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the schema to `revision`; safe to run again (already-applied steps are skipped)."""
    # Alembic's async env runs its own event loop, so it gets a worker thread.
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)
    if revision in ("head", "heads"):
        await install_views(database_url)
