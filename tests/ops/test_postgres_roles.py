"""Each component's Postgres role can do exactly its work: the grants come from TABLE_ACCESS,
every table has a writer, and no role can change the schema or another service's tables."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from specstress.db import schema
from specstress.pipeline.access import (
    COMPONENTS,
    DASHBOARDS,
    MUTABLE,
    OWNER_WRITES,
    READS_EVERYTHING,
    TABLE_ACCESS,
    apply_access,
    relations,
    role_name,
)

PASSWORD = "role-test-password"
# the privilege each statement needs; the statements touch no row
PROBES = {
    "SELECT": "SELECT * FROM {t} LIMIT 0",
    "INSERT": "INSERT INTO {t} SELECT * FROM {t} WHERE false",
    "UPDATE": "UPDATE {t} SET {c} = {c} WHERE false",
    "DELETE": "DELETE FROM {t} WHERE false",
}
DDL = (
    "CREATE TABLE intruder (id int)",
    "CREATE TEMPORARY TABLE intruder (id int)",
    "ALTER TABLE scenarios ADD COLUMN intruder int",
    "DROP TABLE dead_letters",
    "CREATE INDEX intruder ON responses (text)",
    "TRUNCATE llm_calls",
)


def as_role(database_url: str, component: str) -> AsyncEngine:
    url = make_url(database_url).set(username=role_name(component), password=PASSWORD)
    return create_async_engine(url, poolclass=NullPool)


@pytest.fixture
async def granted(database_url: str) -> AsyncIterator[tuple[str, dict[str, str], dict[str, str]]]:
    owner = create_async_engine(database_url, poolclass=NullPool)
    try:
        await apply_access(owner, {c: PASSWORD for c in COMPONENTS})
        async with owner.connect() as conn:
            present = await relations(conn)
            first_columns = {
                r.table_name: r.column_name
                for r in await conn.execute(
                    text(
                        "SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = 'public' AND ordinal_position = 1"
                    )
                )
            }
    finally:
        await owner.dispose()
    yield database_url, present, first_columns


async def _refused(conn: AsyncConnection, sql: str) -> bool:
    try:
        await conn.execute(text(sql))
    except ProgrammingError as exc:
        return "permission denied" in str(exc) or "must be owner" in str(exc)
    finally:
        await conn.rollback()
    return False


async def test_every_table_has_a_writer_and_facts_stay_append_only(database_url: str) -> None:
    owner = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with owner.connect() as conn:
            present = await relations(conn)
    finally:
        await owner.dispose()
    tables = {name for name, kind in present.items() if kind == "table"}
    assert tables == set(schema.metadata.tables), "schema.py and the migrations disagree"
    written = {
        table
        for access in TABLE_ACCESS.values()
        for table, privileges in access.items()
        if "INSERT" in privileges
    }
    unwritten = tables - written - OWNER_WRITES
    assert not unwritten, f"tables no role may write: add them to TABLE_ACCESS: {unwritten}"
    named = {table for access in TABLE_ACCESS.values() for table in access}
    assert named <= set(present), f"TABLE_ACCESS names unknown tables: {named - set(present)}"
    for component, access in TABLE_ACCESS.items():
        for table, privileges in access.items():
            if privileges & {"UPDATE", "DELETE"}:
                assert table in MUTABLE, f"{component} may change rows of append-only {table}"
    assert TABLE_ACCESS[DASHBOARDS] == {} and DASHBOARDS in READS_EVERYTHING


@pytest.mark.parametrize("component", COMPONENTS)
async def test_role_does_its_work_and_nothing_else(
    granted: tuple[str, dict[str, str], dict[str, str]], component: str
) -> None:
    database_url, present, first_columns = granted
    engine = as_role(database_url, component)
    try:
        async with engine.connect() as conn:
            await _check_role(conn, component, present, first_columns)
    finally:
        await engine.dispose()


async def _check_role(
    conn: AsyncConnection, component: str, present: dict[str, str], first_columns: dict[str, str]
) -> None:
    access = TABLE_ACCESS[component]
    reads_all = component in READS_EVERYTHING
    for table, kind in sorted(present.items()):
        allowed = set(access.get(table, ()))
        if reads_all:
            allowed.add("SELECT")
        for privilege, probe in PROBES.items():
            if kind == "view" and privilege != "SELECT":
                continue
            sql = probe.format(t=f'"{table}"', c=f'"{first_columns[table]}"')
            refused = await _refused(conn, sql)
            assert refused == (privilege not in allowed), (component, table, privilege)
    for statement in DDL:
        assert await _refused(conn, statement), (component, statement)


async def test_grants_are_idempotent_and_follow_new_tables(database_url: str) -> None:
    owner = create_async_engine(database_url, poolclass=NullPool)
    try:
        await apply_access(owner, {c: PASSWORD for c in COMPONENTS})
        async with owner.begin() as conn:
            await conn.execute(text("CREATE TABLE added_later (id int)"))
        await apply_access(owner)
    finally:
        await owner.dispose()
    for component, allowed in ((DASHBOARDS, True), ("responder", False)):
        engine = as_role(database_url, component)
        try:
            async with engine.connect() as conn:
                assert await _refused(conn, "SELECT * FROM added_later") is not allowed
        finally:
            await engine.dispose()
