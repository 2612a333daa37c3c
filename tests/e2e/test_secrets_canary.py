"""Canary API keys: a pipeline run whose every model has its own key, none of which may appear
in a log file, a database row, a NATS message or a `/metrics` page afterwards.

The simulator runs with `--require-key`, so a run that completes with no dead letters proves
each key was sent to the provider; the models are spread over the three wire protocols, so each
adapter carries a key in its own header.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from nats.js.errors import NotFoundError
from sqlalchemy import text

from specstress.api import initialise, start_run
from specstress.config import Config, load_config
from specstress.db.engine import create_engine
from specstress.local.stack import Stack, wait_until_idle
from specstress.pipeline.bus import connect
from specstress.pipeline.stages import STAGE_NAMES
from tests.paths import DEMO_CONFIG
from tests.support.pipeline_harness import rows

pytestmark = pytest.mark.e2e
PAIRS = 3
SEED = 5
PROTOCOLS = ("anthropic", "gemini", "openai")


def canary_keys(raw: dict[str, Any]) -> dict[str, str]:
    """A canary key variable of its own for each model of config `raw`: the variables with
    their values."""
    keys = {
        f"SPECSTRESS_CANARY_KEY_{index}": f"sk-canary-{index}-{secrets.token_hex(16)}"
        for index in range(len(raw["models"]))
    }
    if raw.get("watch", {}).get("providers"):
        keys["SPECSTRESS_CANARY_KEY_WATCH"] = f"sk-canary-watch-{secrets.token_hex(16)}"
    return keys


def use_canaries(raw: dict[str, Any], sim_url: str) -> None:
    """Each model of config `raw` on a protocol of its own turn, with its canary key variable
    (the names `canary_keys` gives)."""
    for index, model in enumerate(raw["models"]):
        protocol = PROTOCOLS[index % len(PROTOCOLS)]
        model.update(
            protocol=protocol,
            base_url=f"{sim_url}/v1" if protocol == "openai" else sim_url,
            api_key_env=f"SPECSTRESS_CANARY_KEY_{index}",
        )
    # the watcher lists the models of an account with a key of its own
    for account in raw.get("watch", {}).get("providers", []):
        account.update(
            protocol="anthropic", base_url=sim_url, api_key_env="SPECSTRESS_CANARY_KEY_WATCH"
        )


def _canary_config(path: Path, sim_url: str) -> dict[str, str]:
    """The demo config with canary keys; returns the variables with their canary values."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    use_canaries(raw, sim_url)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return canary_keys(raw)


def leaks(where: str, content: str, canaries: dict[str, str]) -> list[str]:
    return [f"{where}: {name}" for name, value in canaries.items() if value in content]


async def metrics_pages(stack: Stack) -> dict[str, str]:
    pages = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for process in stack.processes.values():
            if process.metrics_port is None or process.name == "llm_sim":
                continue
            reply = await client.get(f"http://127.0.0.1:{process.metrics_port}/metrics")
            reply.raise_for_status()
            pages[process.name] = reply.text
    return pages


async def database_text(database_url: str) -> dict[str, str]:
    """Every row of every table, cast to text (all columns, JSON included)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            tables = list(
                await conn.scalars(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            )
            dumped = {}
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                found = await conn.scalars(text(f"SELECT t::text FROM {quoted} AS t"))
                dumped[table] = "\n".join(found)
            return dumped
    finally:
        await engine.dispose()


async def nats_messages(config: Config) -> dict[str, str]:
    """Every message (subject, headers and payload) of every stream on the server."""
    client = await connect(config.nats_url, "specstress-canary-check")
    try:
        js = client.jetstream()
        dumped = {}
        for info in await js.streams_info():
            name = info.config.name
            assert name is not None
            parts = []
            for sequence in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    message = await js.get_msg(name, sequence)
                except NotFoundError:
                    continue  # deleted or expired
                parts.append(
                    f"{message.subject} {message.headers or {}} "
                    f"{(message.data or b'').decode('utf-8', 'replace')}"
                )
            dumped[name] = "\n".join(parts)
        return dumped
    finally:
        await client.close()


async def canaries_found(
    logs: list[Path],
    database_url: str,
    config: Config,
    metrics: dict[str, str],
    canaries: dict[str, str],
) -> list[str]:
    """Where any canary shows: log files, every table, every stream, the /metrics pages."""
    found: list[str] = []
    for log_file in logs:
        found += leaks(f"log {log_file.name}", log_file.read_text(errors="replace"), canaries)
    for table, content in (await database_text(database_url)).items():
        found += leaks(f"table {table}", content, canaries)
    for stream, content in (await nats_messages(config)).items():
        found += leaks(f"stream {stream}", content, canaries)
    for service, page in metrics.items():
        found += leaks(f"/metrics of {service}", page, canaries)
    return found


async def test_canary_keys_appear_nowhere(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "canary.yaml"
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stack = Stack(config_path=config_path, log_dir=tmp_path / "logs", env=env)
    metrics: dict[str, str] = {}
    try:
        sim_url = stack.start_simulator(require_key=True)
        canaries = _canary_config(config_path, sim_url)
        stack.env.update(canaries)
        for name, value in canaries.items():
            monkeypatch.setenv(name, value)
        config = load_config(config_path)
        assert {m.protocol for m in config.models} == set(PROTOCOLS)
        await initialise(config)
        stack.start_services()
        await start_run(config, PAIRS, SEED)
        await wait_until_idle(config, timeout=240, stack=stack)
        metrics = await metrics_pages(stack)
    finally:
        stack.stop()

    # the run did its work over every protocol, so every key was sent and accepted
    assert (await rows(database_url, "SELECT count(*) AS n FROM dead_letters"))[0]["n"] == 0
    scenarios = await rows(database_url, "SELECT count(*) AS n FROM scenarios")
    responses = await rows(database_url, "SELECT count(*) AS n FROM responses")
    assert scenarios[0]["n"] > 0
    assert responses[0]["n"] == scenarios[0]["n"] * len(config.roles.targets)
    paid: list[dict[str, Any]] = await rows(
        database_url, "SELECT DISTINCT model_key FROM llm_calls WHERE status = 'ok'"
    )
    protocols_used = {config.model(str(r["model_key"])).protocol for r in paid}
    assert protocols_used == set(PROTOCOLS)
    assert len(metrics) == len(STAGE_NAMES)

    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert len(logs) == len(STAGE_NAMES) + 1  # the simulator and every stage
    assert await canaries_found(logs, database_url, config, metrics, canaries) == []
