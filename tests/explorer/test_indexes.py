"""The migrations create exactly the explorer's indexes that db/schema.py declares."""

from __future__ import annotations

from sqlalchemy import text

from specstress.db.engine import create_engine
from tests.support.schema import mentioning, schema_differences

INDEXES = {
    "ix_disagreement_set_d",
    "ix_value_pairs_value1",
    "ix_value_pairs_value2",
    "ix_scenarios_query_trgm",
}


async def test_the_explorer_indexes_match_the_schema(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        diffs = await schema_differences(engine)
        async with engine.connect() as conn:
            found = {
                r.indexname
                for r in await conn.execute(
                    text("SELECT indexname FROM pg_indexes WHERE indexname = ANY(:names)"),
                    {"names": sorted(INDEXES)},
                )
            }
    finally:
        await engine.dispose()
    assert mentioning(diffs, INDEXES) == []
    assert found == INDEXES
