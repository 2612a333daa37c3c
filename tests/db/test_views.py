"""The view files are the views: an upgrade installs every file's view and no other, and
installing them again changes nothing."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import text

from specstress.db.engine import create_engine
from specstress.db.migrate import (
    alembic_config,
    check_revision,
    install_views,
    upgrade,
    view_definitions,
)
from specstress.errors import InputError
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


async def test_an_upgrade_installs_exactly_the_view_files(infra: Infra) -> None:
    url = await ensure_database(infra.database_url, "t_view_files")
    try:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "heads")
        assert await _views(url) == {}, "the migrations themselves create no view"
        await upgrade(url)
        upgraded = await _views(url)
        await install_views(url)
        installed = await _views(url)
    finally:
        await drop_database(infra.database_url, "t_view_files")
    assert set(upgraded) == {name for name, _ in view_definitions()}
    assert installed == upgraded


async def test_a_database_at_an_unknown_revision_is_refused(infra: Infra) -> None:
    url = await ensure_database(infra.database_url, "t_old_revision")
    try:
        await upgrade(url)
        await check_revision(url)
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '0009_x'"))
        finally:
            await engine.dispose()
        with pytest.raises(InputError, match="revision 0009_x") as refused:
            await upgrade(url)
        assert "specstress import" in str(refused.value)
    finally:
        await drop_database(infra.database_url, "t_old_revision")


def test_each_file_creates_the_view_it_is_named_after() -> None:
    for name, statement in view_definitions():
        assert statement.startswith(f"CREATE OR REPLACE VIEW {name} AS"), name
