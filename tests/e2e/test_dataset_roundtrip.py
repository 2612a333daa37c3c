"""A simulated study exported (hf, jsonl, csv) and imported into an empty database: every report
equal; the release-schema files alone give back each exported scenario's D."""

from __future__ import annotations

from pathlib import Path

import pytest

from specstress.analysis.reports import REPORTS, build_report
from specstress.config import Config
from specstress.dataset import TABLES, ExportFormat, export_dataset, import_dataset
from specstress.local.servers import Infra
from tests.support.database import fresh_database
from tests.support.pipeline_harness import finished_run, rows

pytestmark = pytest.mark.e2e
PAIRS = 4
SEED = 5


async def _reports(config: Config) -> dict[str, list[dict[str, object]]]:
    return {name: await build_report(config, name) for name in REPORTS}


async def _counts(database_url: str) -> dict[str, int]:
    return {
        t.name: int((await rows(database_url, f'SELECT count(*) AS n FROM "{t.name}"'))[0]["n"])
        for t in TABLES
    }


async def _d_by_query(database_url: str) -> dict[tuple[str, str], float]:
    found = await rows(
        database_url,
        "SELECT s.query, d.model_set, d.disagreement FROM disagreement d "
        "JOIN scenarios s USING (scenario_id)",
    )
    return {(str(r["query"]), str(r["model_set"])): float(r["disagreement"]) for r in found}


async def test_export_and_import_reproduce_every_report(
    tmp_path: Path,
    nats_url: str,
    database_url: str,
    infra: Infra,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with finished_run(
        tmp_path, nats_url, database_url, monkeypatch, pairs=PAIRS, seed=SEED, timeout=240
    ) as running:
        config = running.config

    before = await _reports(config)
    counts = await _counts(database_url)
    assert counts["classifications"] > 0 and counts["verdicts"] > 0, counts
    assert any(r["high_disagreement"] for r in before["disagreement"])

    for output in ExportFormat:
        out = tmp_path / f"export-{output.value}"
        manifest = await export_dataset(config, out, output, config_name="demo")
        assert manifest["format_version"] == 1
        async with fresh_database(infra) as url:
            copy = config.model_copy(update={"database_url": url})
            await import_dataset(copy, out)
            assert await _counts(url) == counts, output
            assert await _reports(copy) == before, output
            # a second import of the same export adds nothing
            again = await import_dataset(copy, out)
            assert sum(again.inserted.values()) == 0, again.inserted

    # the release's own files, without our dump beside them: same positions, same D
    hf = tmp_path / "export-hf"
    original = await _d_by_query(database_url)
    async with fresh_database(infra) as url:
        copy = config.model_copy(update={"database_url": url})
        for part in ("complete", "data", "judge_evaluations"):
            await import_dataset(copy, hf / part)
        imported = await _d_by_query(url)
        # every scenario that some set flags is in a split, with every model's answer
        flagged = {
            str(r["query"])
            for r in await rows(
                database_url,
                "SELECT DISTINCT s.query FROM disagreement d JOIN scenarios s USING (scenario_id) "
                "WHERE d.high",
            )
        }
        assert flagged
        for (query, model_set), d in original.items():
            if query in flagged:
                assert imported[(query, model_set)] == pytest.approx(d, abs=1e-12)
        verdicts = await rows(url, "SELECT count(*) AS n FROM verdicts")
        assert verdicts[0]["n"] == counts["verdicts"]
