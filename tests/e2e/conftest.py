"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.pipeline_harness import RunningStack, finished_run


@pytest.fixture
async def finished_stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    nats_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[RunningStack]:
    """The demo stack, still running, after a run of the test module's PAIRS value pairs with
    its SEED has gone idle."""
    async with finished_run(
        tmp_path,
        nats_url,
        database_url,
        monkeypatch,
        pairs=request.module.PAIRS,
        seed=request.module.SEED,
        timeout=240,
    ) as running:
        yield running
