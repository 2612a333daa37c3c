"""Whether a migrated database matches the tables db.schema declares (Alembic's autogenerate
comparison), for the tests that check their own tables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress.db.schema import metadata


async def schema_differences(engine: AsyncEngine) -> list[Any]:
    """Every difference between the database behind `engine` and the declared schema."""

    def differences(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(differences)


def mentioning(diffs: list[Any], names: Iterable[str]) -> list[Any]:
    """The differences whose text names one of `names` (a table, an index)."""
    return [d for d in diffs if any(name in repr(d) for name in names)]
