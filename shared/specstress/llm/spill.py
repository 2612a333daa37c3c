"""Paid answers survive a Postgres outage: held and retried, then spilled to a local file.

An answer the provider has billed is worth keeping: if its ledger row cannot be written, the
message fails, comes back, and the same call is bought again. So the gateway writes an `ok`
row through `PaidLedger.record`, which on a connection failure waits and retries for up to
`hold_seconds` (at most `max_held` answers wait at once, so memory stays bounded), then appends
the row to an append-only JSON-lines file and defers the message. The file is written into the
ledger, in one transaction, before this process pays for anything else (and when the service
starts), and emptied once that commit succeeded; ledger inserts keep an existing answer, so a
replay that is interrupted and repeated writes nothing twice. Processes of one service on one
machine share the file under an exclusive `flock`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import LedgerSettings
from specstress.db.engine import database_unreachable
from specstress.errors import RetryLater
from specstress.llm.ledger import AttemptRecord, Ledger, record_attempts

__all__ = ["LedgerUnavailable", "PaidLedger"]

log = logging.getLogger(__name__)

_FIRST_WAIT_SECONDS = 0.25
_MAX_WAIT_SECONDS = 2.0
# how soon a message whose answer was spilled comes back (the spill is replayed first)
_SPILLED_DELAY_SECONDS = 5.0


class LedgerUnavailable(RetryLater):
    """The answer is safe in the spill file; the message comes back once Postgres does."""

    def __init__(self, reason: str) -> None:
        super().__init__(_SPILLED_DELAY_SECONDS, reason, cause="ledger_unavailable")


class PaidLedger:
    """Ledger writes of paid answers for one service process (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        spill_file: Path,
        settings: LedgerSettings,
        *,
        ledger: Ledger | None = None,
    ) -> None:
        """`ledger`: the process's, whose writes are shared with its other calls."""
        self._engine = engine
        self._ledger = ledger or Ledger(engine)
        self.spill_file = spill_file
        self._settings = settings
        self._held = 0
        self._replaying = asyncio.Lock()

    @property
    def held(self) -> int:
        """Answers waiting in memory for their ledger row right now."""
        return self._held

    async def record(self, record: AttemptRecord) -> bool:
        """Write a paid attempt; False when the hash already had an answer (as `Ledger.record`).

        Raises LedgerUnavailable once the answer has been spilled instead."""
        try:
            return await self._ledger.record(record)
        except Exception as error:
            if not database_unreachable(error):
                raise
            first_error: Exception = error
        if self._held >= self._settings.max_held:
            self._spill(record, f"{self._held} answers already held")
            raise LedgerUnavailable(f"ledger unreachable ({first_error}); answer spilled")
        self._held += 1
        metrics.llm_ledger_held.set(self._held)
        try:
            return await self._retry(record, first_error)
        finally:
            self._held -= 1
            metrics.llm_ledger_held.set(self._held)

    async def _retry(self, record: AttemptRecord, error: Exception) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.hold_seconds
        wait = _FIRST_WAIT_SECONDS
        log.warning(
            "%s/%s: ledger write failed (%s); holding the paid answer %s",
            record.model_key,
            record.stage,
            type(error).__name__,
            record.request_hash[:12],
        )
        while loop.time() + wait <= deadline:
            await asyncio.sleep(wait)
            wait = min(wait * 2, _MAX_WAIT_SECONDS)
            try:
                return await self._ledger.record(record)
            except Exception as again:
                if not database_unreachable(again):
                    raise
                error = again
        self._spill(record, f"still unreachable after {self._settings.hold_seconds:.0f} s")
        raise LedgerUnavailable(f"ledger unreachable ({error}); answer spilled")

    def _spill(self, record: AttemptRecord, why: str) -> None:
        line = json.dumps(dataclasses.asdict(record), separators=(",", ":")) + "\n"
        self.spill_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.spill_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock
        metrics.llm_ledger_spilled.inc()
        log.warning(
            "%s/%s: paid answer %s spilled to %s (%s)",
            record.model_key,
            record.stage,
            record.request_hash[:12],
            self.spill_file,
            why,
        )

    def pending(self) -> bool:
        """True while the spill file holds answers not yet in the ledger."""
        try:
            return self.spill_file.stat().st_size > 0
        except FileNotFoundError:
            return False

    async def replay(self) -> int:
        """Write every spilled answer into the ledger and empty the file; returns how many
        rows it held. Raises the database's error (nothing is lost) when Postgres is away."""
        if not self.pending():
            return 0
        async with self._replaying:
            fd = os.open(self.spill_file, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                # blocking, but only for as long as another process's replay or append
                fcntl.flock(fd, fcntl.LOCK_EX)
                records = _parse(self.spill_file, _read_all(fd))
                if records:
                    async with self._engine.begin() as conn:
                        await record_attempts(conn, records)
                os.ftruncate(fd, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        if records:
            log.info("replayed %d spilled answer(s) from %s", len(records), self.spill_file)
        return len(records)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(path: Path, data: bytes) -> list[AttemptRecord]:
    records = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            fields: dict[str, Any] = json.loads(line)
            records.append(AttemptRecord(**fields))
        except (ValueError, TypeError) as exc:
            # only a write cut short by a crash can leave such a line, and only the last one
            log.error("%s line %d: not a spilled answer, skipped (%s)", path, number, exc)
    return records
