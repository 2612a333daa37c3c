"""Every dashboard and rule query, run against real servers after one eventful pipeline run.

The run uses the least-privilege setup end to end: a nats-server on the rendered users and
allow-lists, each service as its own NATS user and Postgres role, the CLI as `cli`. The
simulator injects 429s and malformed judge answers; a second simulator plays a provider whose
account is out of money; a poison message is dead-lettered. A real Prometheus scrapes the
services and the NATS exporter with the committed rules. Then every PromQL expression of the
dashboards and the rules must return data, and every SQL panel must return rows when run as
the Grafana role.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from specstress.api import add_model, initialise, start_run
from specstress.config import Config, load_config
from specstress.contracts import PairSampled
from specstress.db.engine import create_engine
from specstress.local.secure import Credentials, service_env, start_secure_nats
from specstress.local.servers import Infra, drop_database, ensure_database, free_port
from specstress.local.stack import SIM_URL_ENV, Stack, wait_until_idle
from specstress.pipeline.access import DASHBOARDS, apply_access, role_name
from specstress.pipeline.bus import connect
from specstress.pipeline.nats_auth import CLI_USER, INIT_USER
from specstress.pipeline.stages import STAGE_NAMES
from tests.conftest import _server_dir
from tests.ops.tools import DASHBOARDS_DIR, PROMETHEUS_DIR, system_tool
from tests.paths import DEMO_CONFIG

pytestmark = pytest.mark.e2e
PAIRS = 6
SEED = 5
LATE_MODEL = "borealis-latecomer"
# released at the simulator during the run: the watcher registers, backfills and reports it
RELEASED_MODEL = "aurora-nova"
BROKE_MODEL = "aurora-overdrawn"
# Grafana's variables and macros, as Grafana would expand them for the last six hours
RATE_INTERVAL = "1m"
TIME_FILTER = r"\1 BETWEEN now() - interval '6 hours' AND now()"
TIME_GROUP = r'floor(extract(epoch from \1) / 60) * 60 AS "time"'
SETTLE_SECONDS = 90.0


@dataclass
class Observed:
    prometheus_url: str
    prometheus_config: Path
    dashboards_url: str
    owner_url: str
    nats_monitor_url: str


def _spawn(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
        )


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args!r} exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def _config_with_broke_provider(folder: Path, broke_url: str) -> Path:
    """The demo config, plus a target model on a provider that answers `insufficient_quota`
    and a token budget (so the budget gauge is exported)."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["models"].append(
        {
            "key": BROKE_MODEL,
            "family": "aurora",
            "base_url": broke_url,
            "model_id": "aurora-balanced",
            "params": {"temperature": 0.0},
            "simulated": True,
        }
    )
    raw["budget"] = {"max_tokens": 1_000_000_000}
    path = folder / "specstress.ops.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _prometheus_config(folder: Path, targets: dict[str, str]) -> Path:
    """The committed scrape jobs, pointed at this run's processes, with the committed rules."""
    committed = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = [job["job_name"] for job in committed["scrape_configs"]]
    assert set(jobs) == set(targets), "prometheus.yml and this run disagree on the jobs"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [targets[job]]}]} for job in jobs
        ],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def _poison(config: Config) -> None:
    """A pairs.sampled message that does not parse: dead-lettered at once."""
    client = await connect(config.nats_url, "ops-test")
    try:
        await client.jetstream().publish(PairSampled.subject, b'{"not": "a pair"}')
    finally:
        await client.close()


async def _release(sim_url: str, owner_url: str, watcher_log: Path) -> None:
    """Release a model at the simulator and wait for the watcher's report on it."""
    async with httpx.AsyncClient(base_url=sim_url) as client:
        (await client.post("/sim/models", json={"release": RELEASED_MODEL})).raise_for_status()
    engine = create_async_engine(owner_url, poolclass=NullPool)
    deadline = time.monotonic() + 2 * SETTLE_SECONDS
    try:
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                done = await conn.scalar(
                    text("SELECT count(*) FROM model_comparisons WHERE model_key = :k"),
                    {"k": RELEASED_MODEL},
                )
            if done:
                return
            await asyncio.sleep(1)
        async with engine.connect() as conn:
            found = (
                await conn.execute(
                    text(
                        "SELECT status, note, (SELECT count(*) FROM responses "
                        "WHERE model_key = :k) AS answers FROM discovered_models "
                        "WHERE model_id = :k"
                    ),
                    {"k": RELEASED_MODEL},
                )
            ).all()
    finally:
        await engine.dispose()
    log_text = await asyncio.to_thread(watcher_log.read_text, errors="replace")
    tail = log_text.splitlines()[-20:]
    raise TimeoutError(f"no release report of {RELEASED_MODEL}: {found}; " + "\n".join(tail))


async def _prometheus_has(url: str, query: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url) as client:
        while time.monotonic() < deadline:
            reply = await client.get("/api/v1/query", params={"query": query})
            if reply.json()["data"]["result"]:
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"Prometheus never had {query}")


@pytest.fixture(scope="module")
async def observed(infra: Infra) -> AsyncIterator[Observed]:
    prometheus = system_tool("prometheus")
    credentials = Credentials.generate()
    database = f"t_ops_{secrets.token_hex(6)}"
    owner_url = await ensure_database(infra.database_url, database)
    with (
        _server_dir() as folder,
        start_secure_nats(folder / "nats", credentials, "SPECSTRESS") as nats_server,
    ):
        logs = folder / "logs"
        logs.mkdir()
        extra: list[subprocess.Popen[bytes]] = []
        stack = Stack(config_path=DEMO_CONFIG, log_dir=logs, env={})
        try:
            yield await _run(
                prometheus=prometheus,
                credentials=credentials,
                owner_url=owner_url,
                nats_url=nats_server.url,
                monitor_url=nats_server.monitor_url,
                folder=folder,
                stack=stack,
                extra=extra,
            )
        finally:
            stack.stop()
            for process in extra:
                process.terminate()
                process.wait(timeout=30)
            await drop_database(infra.database_url, database)


async def _run(
    *,
    prometheus: str,
    credentials: Credentials,
    owner_url: str,
    nats_url: str,
    monitor_url: str | None,
    folder: Path,
    stack: Stack,
    extra: list[subprocess.Popen[bytes]],
) -> Observed:
    assert monitor_url is not None
    logs = stack.log_dir
    conditions = folder / "conditions.yaml"
    conditions.write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "faults": {"rate_limited": 0.03, "retry_after_seconds": 0.2},
                "models": {"sim-judge-lenient": {"faults": {"malformed": 1.0}}},
            }
        )
    )
    sim_url = stack.start_simulator(conditions=conditions)
    broke_port = free_port()
    broke = _spawn(
        [sys.executable, "-m", "services.llm_sim", "--port", str(broke_port),
         "--fault", "insufficient_quota=1"],
        logs / "llm_sim_broke.log",
    )  # fmt: skip
    extra.append(broke)
    _wait_http(f"http://127.0.0.1:{broke_port}/healthz", broke)

    config_path = _config_with_broke_provider(folder, f"http://127.0.0.1:{broke_port}/v1")
    stack.config_path = config_path
    with pytest.MonkeyPatch.context() as env:
        # the config names the simulator through the environment, as the services see it
        env.setenv(SIM_URL_ENV, stack.env[SIM_URL_ENV])
        base = load_config(config_path)
    owner = base.model_copy(
        update={"nats_url": credentials.nats_url(nats_url, INIT_USER), "database_url": owner_url}
    )
    cli = base.model_copy(
        update={
            "nats_url": credentials.nats_url(nats_url, CLI_USER),
            "database_url": credentials.database_url(owner_url, CLI_USER),
        }
    )
    await initialise(owner)
    engine = create_engine(owner_url)
    try:
        await apply_access(engine, credentials.database)
    finally:
        await engine.dispose()
    stack.service_env = service_env(credentials, nats_url, owner_url)
    stack.start_services()

    exporter_port = free_port()
    exporter = _spawn(
        [sys.executable, "-m", "specstress.pipeline.nats_exporter", "--monitor-url", monitor_url,
         "--port", str(exporter_port)],
        logs / "nats_exporter.log",
    )  # fmt: skip
    extra.append(exporter)
    _wait_http(f"http://127.0.0.1:{exporter_port}/metrics", exporter)

    progress_port = free_port()
    progress = _spawn(
        [sys.executable, "-m", "specstress.pipeline.progress.exporter", "--config",
         str(config_path), "--port", str(progress_port), "--interval", "1"],
        logs / "progress_exporter.log",
        # read-only, as in the Docker stack
        {"DATABASE_URL": credentials.database_url(owner_url, DASHBOARDS), **stack.env},
    )  # fmt: skip
    extra.append(progress)
    _wait_http(f"http://127.0.0.1:{progress_port}/metrics", progress)

    prometheus_port = free_port()
    targets = {
        service: f"127.0.0.1:{stack.processes[service].metrics_port}" for service in STAGE_NAMES
    }
    targets |= {
        "nats": f"127.0.0.1:{exporter_port}",
        "progress": f"127.0.0.1:{progress_port}",
        "prometheus": f"127.0.0.1:{prometheus_port}",
    }
    prometheus_config = _prometheus_config(folder, targets)
    server = _spawn(
        [prometheus, f"--config.file={prometheus_config}",
         f"--storage.tsdb.path={folder / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        logs / "prometheus.log",
    )  # fmt: skip
    extra.append(server)
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    _wait_http(f"{prometheus_url}/-/ready", server)

    await start_run(cli, PAIRS, SEED)
    await wait_until_idle(cli, timeout=300, stack=stack)
    await add_model(cli, LATE_MODEL)
    await _poison(cli)
    await wait_until_idle(cli, timeout=300, stack=stack)
    await _release(sim_url, owner_url, stack.processes["watcher"].log_path)
    # the broke provider's work is deferred, not failed: the run stays busy from here on
    await add_model(cli, BROKE_MODEL)
    await _prometheus_has(
        prometheus_url, 'specstress_llm_calls_total{outcome="terminal_quota"}', SETTLE_SECONDS
    )
    return Observed(
        prometheus_url=prometheus_url,
        prometheus_config=prometheus_config,
        dashboards_url=credentials.database_url(owner_url, DASHBOARDS),
        owner_url=owner_url,
        nats_monitor_url=monitor_url,
    )


# --- the queries ------------------------------------------------------------------------------


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))]


def _panel_targets(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for board in _dashboards():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"].endswith(kind):
                    yield board["title"], panel["title"], target


def _expand(query: str) -> str:
    expanded = query.replace("$__rate_interval", RATE_INTERVAL).replace("$model", LATE_MODEL)
    expanded = re.sub(r"\$__timeFilter\((\w+)\)", TIME_FILTER, expanded)
    expanded = re.sub(r"\$__timeGroupAlias\((\w+), '1m'\)", TIME_GROUP, expanded)
    assert "$" not in expanded, f"a Grafana variable the test does not expand: {query}"
    return expanded


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += group["rules"]
    return rules


PROMQL = (
    [
        pytest.param(_expand(t["expr"]), id=f"{board}: {panel}")
        for board, panel, t in _panel_targets("prometheus")
    ]
    + [
        pytest.param(rule["expr"], id=f"record {rule['record']}")
        for rule in _rules()
        if "record" in rule
    ]
    + [
        pytest.param(rule["record"], id=f"recorded {rule['record']}")
        for rule in _rules()
        if "record" in rule
    ]
)
SQL = [
    pytest.param(_expand(t["rawSql"]), id=f"{board}: {panel}")
    for board, panel, t in _panel_targets("postgresql-datasource")
] + [
    pytest.param(_expand(variable["query"]), id=f"{board['title']}: variable {variable['name']}")
    for board in _dashboards()
    for variable in board["templating"]["list"]
]
# Alerts that this run must set off; the others are proven by promtool's unit tests
# (deploy/prometheus/tests) and here by the data behind every selector they use.
FIRING = {"SpecstressDeadLettersGrowing", "SpecstressProviderQuotaExhausted"}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
_NOT_SELECTORS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                  "and", "or", "unless", "offset"}  # fmt: skip


def selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression: metric names with their matchers."""
    stripped = re.sub(r"\[[^\]]*\]", "", expr)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    found = []
    for match in _SELECTOR.finditer(stripped):
        name = match.group(1)
        rest = stripped[match.end() :].lstrip()
        if name in _NOT_SELECTORS or rest.startswith("("):
            continue
        found.append(name + (match.group(2) or ""))
    return found


async def _query(observed: Observed, expr: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=observed.prometheus_url) as client:
        reply = await client.get("/api/v1/query", params={"query": expr})
    body = reply.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _returns_data(observed: Observed, expr: str) -> list[dict[str, Any]]:
    """The query's result once it has one: rates and rules need a few scrapes and evaluations."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        result = await _query(observed, expr)
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(1)


async def test_each_service_ran_as_its_own_user_and_role(observed: Observed) -> None:
    async with httpx.AsyncClient(base_url=observed.nats_monitor_url) as client:
        connections = (await client.get("/connz?auth=true")).json()["connections"]
    nats_users = {c.get("authorized_user") for c in connections}
    assert set(STAGE_NAMES) <= nats_users
    assert None not in nats_users and "" not in nats_users
    engine = create_async_engine(observed.owner_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            roles = set(
                (
                    await conn.execute(
                        text(
                            "SELECT DISTINCT usename FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                ).scalars()
            )
    finally:
        await engine.dispose()
    # besides the stages, only the completeness exporter, as the read-only dashboards role
    assert roles - {role_name(DASHBOARDS)} == {role_name(service) for service in STAGE_NAMES}


async def test_jetstream_fsyncs_every_write(observed: Observed) -> None:
    async with httpx.AsyncClient(base_url=observed.nats_monitor_url) as client:
        jsz = (await client.get("/jsz")).json()
    assert jsz["config"]["sync_always"] is True


def test_promtool_accepts_the_run_config(observed: Observed) -> None:
    done = subprocess.run(
        [system_tool("promtool"), "check", "config", str(observed.prometheus_config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_every_target_is_up(observed: Observed) -> None:
    result = await _returns_data(observed, "up")
    assert {r["metric"]["job"]: r["value"][1] for r in result} == {
        job: "1" for job in (*STAGE_NAMES, "nats", "progress", "prometheus")
    }


@pytest.mark.parametrize("expr", PROMQL)
async def test_promql_returns_data(observed: Observed, expr: str) -> None:
    assert await _returns_data(observed, expr), expr


@pytest.mark.parametrize("rule", [r for r in _rules() if "alert" in r], ids=lambda r: r["alert"])
async def test_alert_expression_runs_on_live_series(
    observed: Observed, rule: dict[str, Any]
) -> None:
    for selector in selectors(rule["expr"]):
        assert await _returns_data(observed, selector), (rule["alert"], selector)
    result = await _returns_data(observed, rule["expr"]) if rule["alert"] in FIRING else None
    assert result or rule["alert"] not in FIRING, rule["alert"]


@pytest.mark.parametrize("query", SQL)
async def test_sql_panel_returns_rows_as_the_dashboard_role(observed: Observed, query: str) -> None:
    engine = create_async_engine(observed.dashboards_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(query))).all()
    finally:
        await engine.dispose()
    assert rows, query


def test_selectors_of_an_expression() -> None:
    expr = (
        'sum by (service) (increase(specstress_dead_letters_total{service="x"}[15m])) > 0 '
        "unless on (service) up == 0"
    )
    assert selectors(expr) == ['specstress_dead_letters_total{service="x"}', "up"]


def test_every_query_is_collected() -> None:
    assert len(PROMQL) >= 20 and len(SQL) >= 12
