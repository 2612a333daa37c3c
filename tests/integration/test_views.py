"""The view files are the views: what the migrations built and what the files install agree,
and every view in the database has its file."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text

from specstress.db.engine import create_engine
from specstress.db.migrate import alembic_config, install_views, view_definitions
from specstress.local.servers import Infra, drop_database, ensure_database

_DEFINITIONS = text(
    "SELECT viewname, pg_get_viewdef(format('%I', viewname)::regclass, true) AS definition "
    "FROM pg_views WHERE schemaname = 'public' ORDER BY viewname"
)


async def _views(url: str) -> dict[str, str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return {row.viewname: row.definition for row in await conn.execute(_DEFINITIONS)}
    finally:
        await engine.dispose()


async def test_view_files_reproduce_what_the_migrations_built(infra: Infra) -> None:
    url = await ensure_database(infra.database_url, "t_view_files")
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "heads")
        migrated = await _views(url)
        await install_views(url)
        installed = await _views(url)
    finally:
        await drop_database(infra.database_url, "t_view_files")
    assert set(migrated) == {name for name, _ in view_definitions()}
    assert installed == migrated


def test_each_file_creates_the_view_it_is_named_after() -> None:
    for name, statement in view_definitions():
        assert statement.startswith(f"CREATE OR REPLACE VIEW {name} AS"), name
