"""Helpers for the traffic tests: the simulator under given conditions, a config of the test's
own, seeded scenarios, and what the simulator says it served."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from specstress import ids
from specstress.api import initialise
from specstress.config import Config, load_config
from specstress.contracts import Event
from specstress.db import store
from specstress.db.engine import create_engine
from specstress.local.stack import Stack
from specstress.pipeline.bus import connect, publish

TAXONOMY_VERSION = "traffic-test"


@dataclass
class Sim:
    url: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def stats(self) -> dict[str, dict[str, int]]:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"{self.url}/sim/stats")
        reply.raise_for_status()
        models: dict[str, dict[str, int]] = reply.json()["models"]
        return models

    async def count(self, model_id: str, outcome: str) -> int:
        return (await self.stats()).get(model_id, {}).get(outcome, 0)


@contextmanager
def simulator(stack: Stack, tmp_path: Path, conditions: dict[str, Any]) -> Iterator[Sim]:
    """Start the simulator of `stack` under `conditions` (the file format of
    services.llm_sim.conditions); it stops with the stack."""
    path = tmp_path / "conditions.yaml"
    path.write_text(yaml.safe_dump(conditions))
    yield Sim(stack.start_simulator(conditions=path))


def model(key: str, model_id: str, sim: Sim, **settings: Any) -> dict[str, Any]:
    """A model entry of the config, on the simulator."""
    return {
        "key": key,
        "family": "aurora",
        "base_url": sim.base_url,
        "model_id": model_id,
        "simulated": True,
        **settings,
    }


def write_config(
    tmp_path: Path,
    sim: Sim,
    *,
    models: list[dict[str, Any]],
    targets: list[str],
    **sections: Any,
) -> Path:
    """A config whose target models are `models` (plus the simulator's pipeline personas)."""
    pipeline = [
        model("writer", "sim-writer-a", sim),
        model("spectrum", "sim-spectrum", sim),
        model("classifier", "sim-classifier", sim),
        model("judge-strict", "sim-judge-strict", sim),
    ]
    config = {
        "taxonomy": {"source": "builtin"},
        "models": pipeline + models,
        "roles": {
            "generators": [{"model": "writer"}],
            "targets": targets,
            "spectrum": "spectrum",
            "classifier": "classifier",
            "judges": ["judge-strict"],
        },
        "model_sets": {"all": ["*"]},
        "specs": [
            {"id": "example", "version": "1", "path": "builtin:example", "families": ["aurora"]}
        ],
        **sections,
    }
    path = tmp_path / "specstress.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@asynccontextmanager
async def stack_for(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    """A stack with nothing started yet; everything it starts is stopped at the end."""
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stack = Stack(config_path=tmp_path / "specstress.yaml", log_dir=tmp_path / "logs", env=env)
    try:
        yield stack
    finally:
        stack.stop()


async def prepare(config_path: Path) -> Config:
    """Schema, stream, consumers and target models of the config."""
    config = load_config(config_path)
    await initialise(config)
    return config


async def seed_scenarios(database_url: str, count: int, topic: str) -> list[str]:
    """`count` scenarios, one neutral query per value pair, each asking something different."""
    engine = create_engine(database_url, pool_size=2)
    scenario_ids = []
    try:
        pairs: list[dict[str, Any]] = [
            {
                "pair_id": ids.pair_id(f"{topic} {n}", "honesty", TAXONOMY_VERSION),
                "value1": f"{topic} {n}",
                "value2": "honesty",
                "taxonomy_version": TAXONOMY_VERSION,
                "seed": 0,
                "run_index": n,
            }
            for n in range(count)
        ]
        await store.insert_pairs(engine, pairs)
        for n, pair in enumerate(pairs):
            scenario_id = ids.scenario_id(pair["pair_id"], "neutral", "test", "1")
            await store.insert_scenario(
                engine,
                scenario_id=scenario_id,
                pair_id=pair["pair_id"],
                variant="neutral",
                generator="test",
                prompt_version="1",
                query=f"Question {n} about {topic}: should I tell my friend the plain truth?",
            )
            scenario_ids.append(scenario_id)
    finally:
        await engine.dispose()
    return scenario_ids


async def publish_all(nats_url: str, events: list[Event]) -> None:
    client = await connect(nats_url, "traffic-test")
    try:
        js = client.jetstream()
        for event in events:
            await publish(js, event)
    finally:
        await client.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], stack: Stack, timeout: float, what: str
) -> None:
    """Wait until `check()` holds; a guard against hanging, not a measurement."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if stack.dead():
            raise RuntimeError(f"process(es) died: {', '.join(stack.dead())}")
        if loop.time() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.25)


def specstress_cli(config: Path, database_url: str, *args: str) -> str:
    """Run the `specstress` command as a user would; its output, or a failed assertion."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("specstress")), *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
