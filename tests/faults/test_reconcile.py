"""Work whose event was lost is found in the database and finished by `reconcile`."""

from __future__ import annotations

from pathlib import Path

import pytest

from specstress import ids
from specstress.api import run_reconcile, start_run
from specstress.db import store
from specstress.db.engine import create_engine
from specstress.local.stack import wait_until_idle
from specstress.method.taxonomy import load_taxonomy
from tests.support.pipeline_harness import rows, running_stack

pytestmark = pytest.mark.faults


async def test_pairs_stored_but_never_published_are_completed(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_stack(tmp_path, nats_url, database_url, monkeypatch) as running:
        config = running.config
        await start_run(config, 2, 3)
        await wait_until_idle(config, timeout=120, stack=running.stack)
        # a CLI that died after storing its pairs: rows exist, no event was ever published
        taxonomy = load_taxonomy(config.taxonomy.source)
        lost = [("honesty", "loyalty"), ("privacy", "public health")]
        engine = create_engine(database_url)
        try:
            await store.insert_pairs(
                engine,
                [
                    {
                        "pair_id": ids.pair_id(v1, v2, taxonomy.version),
                        "value1": v1,
                        "value2": v2,
                        "taxonomy_version": taxonomy.version,
                        "seed": 0,
                        "run_index": 100 + i,
                    }
                    for i, (v1, v2) in enumerate(lost)
                ],
            )
        finally:
            await engine.dispose()
        accepted = await run_reconcile(config)
        assert accepted["scenario_generator"] == len(lost)
        assert accepted["responder"] == 0
        await wait_until_idle(config, timeout=120, stack=running.stack)

        settled = await rows(
            database_url,
            "SELECT p.pair_id, (SELECT count(*) FROM scenarios s WHERE s.pair_id = p.pair_id)"
            " + (SELECT count(*) FROM scenario_drops d WHERE d.pair_id = p.pair_id) AS n"
            " FROM value_pairs p",
        )
        assert len(settled) == 4 and all(r["n"] == 3 for r in settled)
        missing = await rows(
            database_url,
            "SELECT count(*) AS n FROM scenarios s CROSS JOIN models m WHERE m.active AND NOT"
            " EXISTS (SELECT 1 FROM classifications c JOIN responses r USING (response_id)"
            " WHERE r.scenario_id = s.scenario_id AND r.model_key = m.model_key)",
        )
        assert missing[0]["n"] == 0
        # nothing is left to do, so a second pass emits nothing new
        assert set((await run_reconcile(config)).values()) <= {0}
