"""The watcher's decisions against a real Postgres and the simulator over HTTP: rules, the
daily limit, registration once however many watchers race, retirement and revival, failed
listings, the fleet-wide lock, and registering a proposed model by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner, Result

from specstress.api import add_discovered, initialise
from specstress.cli.main import app
from specstress.config import Config
from specstress.contracts import Event, ModelRegistered
from specstress.db.engine import create_engine
from specstress.llm import Gateway
from specstress.watch import Leadership, Watcher, resolve_model
from specstress.watch import store as discoveries
from tests.paths import DEMO_CONFIG
from tests.support.schema import mentioning, schema_differences
from tests.support.simulator import served_simulator


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    async with served_simulator() as url:
        yield url


def watch_config(
    sim_url: str, database_url: str, nats_url: str, folder: Path, **rule: Any
) -> tuple[Config, Path]:
    raw = yaml.safe_load(DEMO_CONFIG.read_text().replace("${SPECSTRESS_SIM_URL:-", "${NOPE:-"))
    for model in raw["models"]:
        model["base_url"] = f"{sim_url}/v1"
    raw["embedding"]["base_url"] = f"{sim_url}/v1"
    raw["nats_url"], raw["database_url"] = nats_url, database_url
    # the file's ${...} defaults are read by load_config, not by Config itself
    raw["bus"].pop("replicas", None)
    account = raw["watch"]["providers"][0]
    account["base_url"] = f"{sim_url}/v1"
    account["rules"][0].update(rule)
    path = folder / "specstress.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return Config.model_validate(raw), path


class Bus:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    def registered(self) -> list[str]:
        return [e.model_key for e in self.events if isinstance(e, ModelRegistered)]


async def _sim(sim_url: str, **change: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        (await client.post("/sim/models", json=change)).raise_for_status()


async def _status(engine: Any, model_id: str) -> discoveries.Discovered:
    [row] = [r for r in await discoveries.discovered(engine) if r.model_id == model_id]
    return row


async def test_watchers_register_once_retire_and_revive(
    sim_url: str, database_url: str, nats_url: str, server_tmp_path: Path
) -> None:
    config, _ = watch_config(sim_url, database_url, nats_url, server_tmp_path, max_new_per_day=1)
    await initialise(config)
    engine = create_engine(database_url)
    gateways = [Gateway(engine, service="watcher") for _ in range(3)]
    bus = Bus()
    watchers = [Watcher(config, engine, g, bus.publish) for g in gateways]
    try:
        await watchers[0].poll()
        # configured targets are registered as they are, other configured models ignored
        assert (await _status(engine, "aurora-cautious")).status == "registered"
        assert (await _status(engine, "sim-judge-strict")).status == "ignored"
        assert bus.events == []

        # two releases, a rule allowing one a day; three watchers at once register it once
        await _sim(sim_url, release="aurora-nova")
        await _sim(sim_url, release="aurora-later")
        await asyncio.gather(*(w.poll() for w in watchers))
        assert bus.registered() == ["aurora-later"] or bus.registered() == ["aurora-nova"]
        [first] = bus.registered()
        second = ({"aurora-nova", "aurora-later"} - {first}).pop()
        held = await _status(engine, second)
        assert held.status == "proposed" and "models of the day" in held.note
        entry = await resolve_model(config, engine, first)
        assert (entry.model_id, entry.family, entry.params) == (
            first,
            "aurora",
            {"temperature": 0.0},
        )

        # gone from the list: retired, no longer active; listed again: back
        await _sim(sim_url, retire=first)
        await _sim(sim_url, retire="aurora-balanced")
        await watchers[1].poll()
        assert (await _status(engine, first)).status == "retired"
        async with engine.connect() as conn:
            active: dict[str, bool] = dict(
                (await conn.execute(text("SELECT model_key, active FROM models"))).all()
            )
        assert active[first] is False and active["aurora-balanced"] is False
        assert active["aurora-cautious"] is True
        await _sim(sim_url, release="aurora-balanced")
        await watchers[2].poll()
        assert (await _status(engine, "aurora-balanced")).status == "registered"
        async with engine.connect() as conn:
            assert await conn.scalar(
                text("SELECT active FROM models WHERE model_key = 'aurora-balanced'")
            )
        assert len(bus.registered()) == 1
    finally:
        for gateway in gateways:
            await gateway.aclose()
        await engine.dispose()


async def test_a_failed_listing_is_counted_and_changes_nothing(
    sim_url: str, database_url: str, nats_url: str, server_tmp_path: Path
) -> None:
    config, _ = watch_config(sim_url, database_url, nats_url, server_tmp_path)
    await initialise(config)
    engine = create_engine(database_url)
    gateway = Gateway(engine, service="watcher")
    try:
        watcher = Watcher(config, engine, gateway, Bus().publish)
        await watcher.poll()
        before = await discoveries.discovered(engine)
        account = config.watch.providers[0]
        broken = config.model_copy(
            update={
                "watch": config.watch.model_copy(
                    update={
                        "providers": [
                            account.model_copy(
                                update={
                                    "base_url": "http://127.0.0.1:9/v1",
                                    "retry": account.retry.model_copy(update={"max_attempts": 1}),
                                    "timeouts": account.timeouts.model_copy(
                                        update={"connect_seconds": 0.5}
                                    ),
                                }
                            )
                        ]
                    }
                )
            }
        )
        labels = {"provider": account.key, "outcome": "retryable"}
        failures = REGISTRY.get_sample_value("specstress_watch_polls_total", labels) or 0.0
        await Watcher(broken, engine, gateway, Bus().publish).poll()
        assert REGISTRY.get_sample_value("specstress_watch_polls_total", labels) == failures + 1
        after = await discoveries.discovered(engine)
        assert [(r.model_id, r.status) for r in after] == [(r.model_id, r.status) for r in before]
    finally:
        await gateway.aclose()
        await engine.dispose()


async def test_one_process_holds_the_watch(database_url: str) -> None:
    engine = create_engine(database_url)
    first, second = Leadership(engine), Leadership(engine)
    try:
        assert await first.held()
        assert await first.held()
        assert not await second.held()
        await first.release()
        assert await second.held()
    finally:
        await first.release()
        await second.release()
        await engine.dispose()


async def _models_command(config_path: Path, *args: str) -> Result:
    """`specstress models ...` on the config at `config_path`, off the event loop."""
    command = ["models", *args, "-c", str(config_path)]
    return await asyncio.to_thread(CliRunner().invoke, app, command)


async def test_a_proposed_model_is_registered_by_hand(
    sim_url: str, database_url: str, nats_url: str, server_tmp_path: Path
) -> None:
    config, path = watch_config(sim_url, database_url, nats_url, server_tmp_path, action="propose")
    await initialise(config)
    engine = create_engine(database_url)
    gateway = Gateway(engine, service="watcher")
    try:
        await _sim(sim_url, release="aurora-nova")
        await Watcher(config, engine, gateway, Bus().publish).poll()
        assert (await _status(engine, "aurora-nova")).status == "proposed"
    finally:
        await gateway.aclose()
        await engine.dispose()
    dry = await _models_command(path, "add", "--discovered", "aurora-nova", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "backfill estimate: aurora-nova: 0 scenarios" in dry.output
    row, estimate, done = await add_discovered(config, "sim/aurora-nova")
    assert done and row.model_key == "aurora-nova" and estimate.total_usd == 0.0
    again = await _models_command(path, "add", "--discovered", "aurora-nova")
    assert again.exit_code == 2 and "is registered, not proposed" in again.output
    unknown = await _models_command(path, "add", "--discovered", "gpt-x")
    assert unknown.exit_code == 2 and "no discovered model 'gpt-x'" in unknown.output
    listed = await _models_command(path, "discovered")
    assert (
        listed.exit_code == 0 and "aurora-nova" in listed.output and "registered" in listed.output
    )
    report = await _models_command(path, "compare", "aurora-nova", "--against", "aurora-cautious")
    assert report.exit_code == 0, report.output
    assert "aurora-nova (family aurora) against aurora-cautious over 0 scenarios" in report.output
    missing = await _models_command(path, "compare", "gpt-x")
    assert missing.exit_code == 2 and "'gpt-x' is not registered" in missing.output


async def test_migration_matches_schema_for_the_watch_tables(engine: AsyncEngine) -> None:
    watched = ("discovered_models", "model_comparisons", "'models'")
    assert mentioning(await schema_differences(engine), watched) == []
