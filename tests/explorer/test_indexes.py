"""The migrations create exactly the explorer's indexes that db/schema.py declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from specstress.db.engine import create_engine
from specstress.db.schema import metadata

INDEXES = {
    "ix_disagreement_set_d",
    "ix_value_pairs_value1",
    "ix_value_pairs_value2",
    "ix_scenarios_query_trgm",
}


async def test_the_explorer_indexes_match_the_schema(database_url: str) -> None:
    def differences(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(differences)
            found = {
                r.indexname
                for r in await conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE indexname = ANY(:names)"),
                    {"names": sorted(INDEXES)},
                )
            }
    finally:
        await engine.dispose()
    assert [d for d in diffs if any(name in repr(d) for name in INDEXES)] == []
    assert found == INDEXES
