"""The Docker stack's files are what the code says: compose parsed and validated by the real
Compose v2 binary, the NATS config rendered from the bus, Dockerfile lint, Prometheus config,
rules and alert unit tests, and dashboards that use the provisioned datasources."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from specstress.local.secure import Credentials
from specstress.pipeline.access import role_name
from specstress.pipeline.bus import servers
from specstress.pipeline.nats_auth import password_env, render_config
from specstress.pipeline.stages import STAGE_NAMES, STAGES
from tests.ops.tools import (
    CLUSTER_OVERRIDE,
    COMPOSE_FILE,
    DASHBOARDS_DIR,
    DEPLOY,
    NATS_CONF,
    PROMETHEUS_DIR,
    PROVIDERS_OVERRIDE,
    PROVISIONING_DIR,
    system_tool,
    venv_tool,
)
from tests.paths import REPO

# published on the host: Grafana for people, Prometheus on the loopback for operators
PUBLISHED = {"grafana": "3000", "prometheus": "127.0.0.1"}
ONE_SHOT = {"init", "cli"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """What compose interpolates from .env, as `specstress ops stack-env` writes it."""
    env_file = tmp_path / "stack.env"
    subprocess.run(
        [venv_tool("specstress"), "ops", "stack-env", "--out", str(env_file)],
        check=True,
        capture_output=True,
    )
    lines = env_file.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **values}


def compose(env: dict[str, str], *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> str:
    command = [venv_tool("docker-compose"), "--project-directory", str(REPO)]
    for file in files:
        command += ["-f", str(file)]
    done = subprocess.run(
        [*command, *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# the main file alone, and with the cluster override (3 NATS nodes, 2 replicas of each stage)
STACKS = {"single": (COMPOSE_FILE,), "cluster": (COMPOSE_FILE, CLUSTER_OVERRIDE)}
NATS_NODES = {"single": {"nats"}, "cluster": {"nats", "nats-2", "nats-3"}}


@pytest.fixture(params=list(STACKS))
def stack(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def model(env: dict[str, str], stack: str) -> dict[str, Any]:
    """The compose model after merging, anchors and interpolation, from Compose itself."""
    resolved: dict[str, Any] = json.loads(
        compose(env, "config", "--format", "json", files=STACKS[stack])
    )
    return resolved


def test_compose_file_parses_and_names_every_service() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(raw, dict) and isinstance(raw["services"], dict)
    stage_names = {service.replace("_", "-") for service in STAGE_NAMES}
    assert stage_names <= set(raw["services"])
    expected = {
        "nats",
        "nats-exporter",
        "progress-exporter",
        "postgres",
        "llm-sim",
        "init",
        "cli",
        "prometheus",
    }
    assert expected | {"grafana"} <= set(raw["services"])


def test_compose_validates_with_and_without_the_providers_override(
    env: dict[str, str], tmp_path: Path
) -> None:
    compose(env, "config", "--quiet")
    config_file = tmp_path / "specstress.yaml"
    config_file.write_text((REPO / "specstress.demo.yaml").read_text())
    keys = DEPLOY / "providers.env.local"
    created = not keys.exists()
    if created:
        keys.write_text((DEPLOY / "providers.env.example").read_text())
    try:
        override = json.loads(
            compose(
                {**env, "SPECSTRESS_CONFIG_FILE": str(config_file)},
                "config",
                "--format",
                "json",
                files=(COMPOSE_FILE, PROVIDERS_OVERRIDE),
            )
        )
    finally:
        if created:
            keys.unlink()
    assert "llm-sim" not in override["services"], "the simulator only runs on request"
    for stage in STAGES:
        service = override["services"][stage.host_name]
        assert service["volumes"][0]["target"] == "/app/config/specstress.yaml"
        assert service["volumes"][0]["source"] == str(config_file)
        # keys go to the stages that call models, and nowhere else
        assert ("OPENAI_API_KEY" in service["environment"]) is stage.calls_llm, stage.name
    for name in ("init", "nats", "postgres", "grafana", "prometheus"):
        assert "OPENAI_API_KEY" not in override["services"][name].get("environment", {}), name


def test_every_service_has_image_health_check_and_environment(
    model: dict[str, Any], stack: str
) -> None:
    services = model["services"]
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service["restart"] == "unless-stopped", name
        assert "container_name" not in service, f"{name} could not be scaled"
        if name in PUBLISHED:
            assert PUBLISHED[name] in json.dumps(service["ports"]), name
        else:
            assert not service.get("ports"), f"{name} publishes a host port"
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert condition["condition"] == wanted, (name, dependency)
    assert services["nats-exporter"]["network_mode"] == "service:nats"
    assert services["init"]["depends_on"].keys() == {*NATS_NODES[stack], "postgres"}


def test_the_cluster_override_replicates_the_stream_and_every_stage(
    env: dict[str, str],
) -> None:
    services = json.loads(compose(env, "config", "--format", "json", files=STACKS["cluster"]))[
        "services"
    ]
    for stage in STAGE_NAMES:
        assert services[stage.replace("_", "-")]["deploy"]["replicas"] == 2, stage
    assert services["init"]["environment"]["SPECSTRESS_STREAM_REPLICAS"] == "3"
    names = set()
    for node in sorted(NATS_NODES["cluster"]):
        command = services[node]["command"]
        names.add(command[command.index("--server_name") + 1])
        routes = command[command.index("--routes") + 1].split(",")
        assert {urlsplit(route).hostname for route in routes} == NATS_NODES["cluster"] - {node}
        assert {v["target"] for v in services[node]["volumes"]} == {"/etc/nats/nats.conf", "/data"}
    assert len(names) == 3
    data = {v["source"] for n in NATS_NODES["cluster"] for v in services[n]["volumes"]}
    assert len(data) == 4  # the shared config file and a store of each node's own


def test_each_stage_connects_as_its_own_user_and_role(model: dict[str, Any], stack: str) -> None:
    for stage in STAGE_NAMES:
        service = model["services"][stage.replace("_", "-")]
        environment = service["environment"]
        nodes = [urlsplit(url) for url in servers(environment["NATS_URL"])]
        assert {node.hostname for node in nodes} == NATS_NODES[stack]
        for node in nodes:
            assert node.username == stage
            assert (
                node.password
                == model["services"][node.hostname]["environment"][password_env(stage)]
            )
        database = make_url(environment["DATABASE_URL"])
        assert (database.username, database.host) == (role_name(stage), "postgres")
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert service["command"][:3] == ["python", "-m", f"services.{stage}"]
        assert service["expose"] == ["9100"]


def test_nats_config_is_rendered_from_the_bus_and_accepted_by_nats_server() -> None:
    assert NATS_CONF.read_text() == render_config(), (
        "deploy/nats/nats.conf is stale: run `specstress ops nats-config --out deploy/nats/nats.conf`"
    )
    done = subprocess.run(
        [venv_tool("nats-server"), "-t", "-c", str(NATS_CONF)],
        env={"PATH": "/usr/bin:/bin", **Credentials.generate().env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = NATS_CONF.read_text().splitlines()
    assert "  sync_interval: always" in lines
    # monitoring has no authentication: loopback only
    assert [line for line in lines if line.startswith("http")] == ["http: 127.0.0.1:8222"]
    assert "no_auth_user" not in NATS_CONF.read_text()


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [venv_tool("hadolint"), str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_config_rules_and_alert_unit_tests_pass() -> None:
    promtool = system_tool("promtool")
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", *(str(p) for p in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")))],
        ["test", "rules", "tests/alerts.test.yml"],
    ):
        done = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {*STAGE_NAMES, "nats", "progress", "prometheus"}


def test_dashboards_use_the_provisioned_datasources() -> None:
    provisioned = yaml.safe_load((PROVISIONING_DIR / "datasources" / "specstress.yml").read_text())
    uids = {source["uid"]: source["type"] for source in provisioned["datasources"]}
    boards = [json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))]
    assert {board["title"] for board in boards} == {
        "specstress · Pipeline health",
        "specstress · Model behaviour",
        "specstress · New model watch",
    }
    assert len({board["uid"] for board in boards}) == len(boards)
    for board in boards:
        sources = [
            target["datasource"] for panel in board["panels"] for target in panel.get("targets", [])
        ] + [variable["datasource"] for variable in board["templating"]["list"]]
        for source in sources:
            assert uids.get(source["uid"]) == source["type"], (board["title"], source)
