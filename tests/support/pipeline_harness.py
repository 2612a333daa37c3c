"""Helpers shared by the end-to-end and fault tests: a running stack and the planted truth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from specstress.api import initialise, start_run
from specstress.config import Config, load_config
from specstress.db.engine import create_engine
from specstress.local.stack import SIM_URL_ENV, Stack, wait_until_idle
from tests.paths import DEMO_CONFIG


@dataclass
class RunningStack:
    stack: Stack
    config: Config
    sim_url: str


@asynccontextmanager
async def running_stack(
    tmp_path: Path,
    nats_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    config_path: Path = DEMO_CONFIG,
    conditions: Path | None = None,
) -> AsyncIterator[RunningStack]:
    """The simulator (under `conditions`, a file) and the six services on `config_path`."""
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stack = Stack(config_path=config_path, log_dir=tmp_path / "logs", env=env)
    try:
        sim_url = stack.start_simulator(conditions=conditions)
        monkeypatch.setenv(SIM_URL_ENV, stack.env[SIM_URL_ENV])
        config = load_config(config_path)
        await initialise(config)
        stack.start_services()
        yield RunningStack(stack, config, sim_url)
    finally:
        stack.stop()


@asynccontextmanager
async def finished_run(
    tmp_path: Path,
    nats_url: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    pairs: int,
    seed: int,
    timeout: float,
    config_path: Path = DEMO_CONFIG,
) -> AsyncIterator[RunningStack]:
    """A running stack that has taken a run of `pairs` value pairs and gone idle after it."""
    async with running_stack(
        tmp_path, nats_url, database_url, monkeypatch, config_path=config_path
    ) as running:
        await start_run(running.config, pairs, seed)
        await wait_until_idle(running.config, timeout=timeout, stack=running.stack)
        yield running


async def rows(database_url: str, sql: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql))]
    finally:
        await engine.dispose()


async def check_planted_disagreement(
    running: RunningStack, database_url: str
) -> dict[tuple[str, str], float]:
    """Every stored D is the planted one and none is missing or extra; returns the planted D."""
    stored = {
        (str(r["scenario_id"]), str(r["model_set"])): float(r["disagreement"])
        for r in await rows(database_url, "SELECT * FROM disagreement")
    }
    expected = await planted_disagreement(running, database_url)
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, abs=1e-9), key
    return expected


async def planted_disagreement(
    running: RunningStack, database_url: str
) -> dict[tuple[str, str], float]:
    """D per (scenario, model set) computed with numpy from the simulator's planted positions."""
    answers = await rows(
        database_url,
        "SELECT s.scenario_id, s.query, r.model_key, m.family FROM responses r "
        "JOIN scenarios s USING (scenario_id) JOIN models m USING (model_key)",
    )
    planted: dict[str, dict[str, tuple[str, tuple[int, int]]]] = {}
    async with httpx.AsyncClient(base_url=running.sim_url) as client:
        for a in answers:
            model_id = running.config.model(str(a["model_key"])).model_id
            reply = await client.post("/sim/planted", json={"model": model_id, "query": a["query"]})
            reply.raise_for_status()
            body = reply.json()
            planted.setdefault(str(a["scenario_id"]), {})[str(a["model_key"])] = (
                str(a["family"]),
                (body["value1_position"], body["value2_position"]),
            )
    expected: dict[tuple[str, str], float] = {}
    for scenario_id, by_model in planted.items():
        available = [(key, family) for key, (family, _) in by_model.items()]
        for name in running.config.model_sets:
            members = running.config.model_set_members(name, available)
            if len(members) < 2:
                continue
            matrix = np.array([by_model[k][1] for k in members], dtype=float)
            expected[(scenario_id, name)] = float(np.std(matrix, axis=0, ddof=0).max())
    return expected
