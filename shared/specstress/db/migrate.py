"""Apply the versioned schema migrations (Alembic) and the current view definitions.

Tables change only through migrations. The analysis views are derived, so their current SQL
lives in one place, `db/views/NN_name.sql` (NN gives the order in which they depend on each
other), and every upgrade to the newest revision replaces them from there. A view whose columns
shrink or change type cannot be replaced in place: drop it in a migration, and the upgrade
creates it again from its file.

The migrations written before the first release were folded into one baseline (revision "0013",
the id of their last head, whose DDL is `migrations/baseline.sql`): a database an earlier
checkout brought to that head carries on; one left at an older revision is refused with a
message saying how to move its data.
"""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import text

from specstress.db.engine import async_url, create_engine
from specstress.errors import InputError

__all__ = ["alembic_config", "check_revision", "install_views", "upgrade", "view_definitions"]

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


async def check_revision(database_url: str) -> None:
    """Refuse a database whose recorded revision this checkout's migrations do not know."""
    known = {
        s.revision
        for s in ScriptDirectory.from_config(alembic_config(database_url)).walk_revisions()
    }
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            if (await conn.scalar(text("SELECT to_regclass('alembic_version')"))) is None:
                return
            recorded = (await conn.scalars(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    unknown = sorted(set(recorded) - known)
    if unknown:
        raise InputError(
            f"the database is at schema revision {', '.join(unknown)}, which this version of "
            "specstress does not know (the migrations before 0.1 were folded into revision "
            "0013, and a newer checkout may have added some): upgrade it with the checkout that "
            "made it, or move its study with `specstress export` there and `specstress import` "
            "into a new database"
        )


async def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the schema to `revision`; safe to run again (already-applied steps are skipped)."""
    await check_revision(database_url)
    # Alembic's async env runs its own event loop, so it gets a worker thread.
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)
    if revision in ("head", "heads"):
        await install_views(database_url)
