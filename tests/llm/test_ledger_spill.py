"""A paid answer outlives a Postgres outage: held while the server restarts, spilled to a file
when it stays away, and written into the ledger from that file once it is back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from specstress.config import LedgerSettings
from specstress.db.engine import create_engine
from specstress.db.migrate import upgrade
from specstress.llm.ledger import AttemptRecord, Ledger, find_completed
from specstress.llm.spill import LedgerUnavailable, PaidLedger
from specstress.local.servers import ensure_database, free_port, start_postgres, stop_postgres
from tests.support.rows import paid_attempt


def _paid(digest: str) -> AttemptRecord:
    return paid_attempt(
        digest,
        text=f"answer {digest}",
        finish_reason=None,
        stage="responder",
        http_status=200,
        input_tokens=3,
        output_tokens=5,
        cost_usd=0.25,
    )


def _failed(digest: str) -> AttemptRecord:
    return AttemptRecord(digest, "responder", "m", 1, "error", 0.1, error_class="transient")


async def test_an_answer_is_held_across_an_immediate_postgres_restart(
    server_tmp_path: Path,
) -> None:
    server = start_postgres(server_tmp_path / "pg")
    try:
        url = await ensure_database(server.url, "spill")
        await upgrade(url)
        engine = create_engine(url, pool_size=2, max_overflow=0)
        writes = Ledger(engine)
        ledger = PaidLedger(
            engine,
            server_tmp_path / "spill" / "t.jsonl",
            LedgerSettings(hold_seconds=60),
            ledger=writes,
        )
        # the ledger's connection for writes, open when the crash kills it
        await writes.record(_failed("warm"))
        stop_postgres(server, "immediate")
        held = asyncio.create_task(ledger.record(_paid("a" * 64)))
        await asyncio.sleep(1.5)
        assert not held.done() and ledger.held == 1
        server = start_postgres(server.data_dir, server.port)
        assert await asyncio.wait_for(held, 30) is True
        assert ledger.held == 0
        stored = await find_completed(engine, "a" * 64)
        assert stored is not None and stored["text"] == f"answer {'a' * 64}"
        assert not ledger.pending()
        await writes.aclose()
        await engine.dispose()
    finally:
        server.stop()


async def test_an_answer_spilled_while_postgres_is_away_is_replayed_once(
    tmp_path: Path, database_url: str
) -> None:
    spill = tmp_path / "spill" / "responder.jsonl"
    nowhere = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    away = PaidLedger(nowhere, spill, LedgerSettings(hold_seconds=0.6, max_held=1))
    with pytest.raises(LedgerUnavailable):
        await away.record(_paid("b" * 64))
    # past `max_held`, the next answer goes straight to the file
    first = asyncio.create_task(away.record(_paid("c" * 64)))
    await asyncio.sleep(0.1)
    with pytest.raises(LedgerUnavailable):
        await away.record(_paid("d" * 64))
    with pytest.raises(LedgerUnavailable):
        await first
    await nowhere.dispose()
    lines = spill.read_text().splitlines()
    assert sorted(json.loads(line)["request_hash"][0] for line in lines) == ["b", "c", "d"]
    # a write cut short by a crash leaves a torn last line: skipped, the rest replayed
    with spill.open("a") as torn:
        torn.write('{"request_hash": "e')

    engine = create_engine(database_url)
    try:
        back = PaidLedger(engine, spill, LedgerSettings())
        assert back.pending()
        assert await back.replay() == 3
        assert not back.pending() and spill.read_text() == ""
        # a second replay of the same answers (say, another process's copy) adds nothing
        spill.write_text("\n".join(lines) + "\n")
        assert await back.replay() == 3
        async with engine.connect() as conn:
            counts = (
                await conn.execute(
                    text(
                        "SELECT count(*), sum(cost_usd) FROM llm_calls WHERE status = 'ok'"
                        " UNION ALL SELECT 0, sum(cost_usd) FROM llm_spend"
                    )
                )
            ).all()
        assert counts[0] == (3, pytest.approx(0.75))
        assert counts[1][1] == pytest.approx(0.75)
    finally:
        await engine.dispose()
