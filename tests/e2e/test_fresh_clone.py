"""A new user's first run: a clone in a mode-700 folder (root's home, a `mktemp -d` folder)
brings up the demo's private PostgreSQL and NATS, whoever runs it, and `make clean` removes
every trace, the temp folder PostgreSQL may have needed included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from specstress.local.servers import docker_available, relocated_postgres_dir, stop_servers_under
from tests.paths import REPO

# Run by the clone's own code: the demo's default state folder, the demo's start-up, its line
# saying where the state lives, then one query and one JetStream call to prove both servers up.
PROBE = """
import asyncio, inspect, json, os, sys
import nats, specstress
from sqlalchemy import text
from specstress.api import database
from specstress.cli.demo import demo, print_state
from specstress.config import load_config
from specstress.local.servers import ensure_database, resolve_infra

state_dir = inspect.signature(demo).parameters["state_dir"].default

async def probe(nats_url, database_url):
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().account_info()
    finally:
        await client.close()
    config = load_config("specstress.demo.yaml").model_copy(update={"database_url": database_url})
    async with database(config) as engine, engine.connect() as connection:
        return await connection.scalar(text("SELECT current_user"))

with resolve_infra(state_dir) as infra:
    print_state(state_dir, infra.postgres_dir)
    url = asyncio.run(ensure_database(infra.database_url, "specstress"))
    user = asyncio.run(probe(infra.nats_url, url))
    info = infra.postgres_dir.lstat()
    print(json.dumps({
        "library": specstress.__file__, "state_dir": str(state_dir.absolute()),
        "sources": [infra.nats_source, infra.database_source], "user": user,
        "postgres_dir": str(infra.postgres_dir), "owner": info.st_uid,
        "mode": info.st_mode & 0o777,
    }))
"""


@pytest.fixture
def private_folder() -> Iterator[Path]:
    """A folder only the current user may enter, as root's home or `mktemp -d` gives."""
    folder = Path(tempfile.mkdtemp(prefix="specstress-clone-"))
    try:
        assert folder.stat().st_mode & 0o777 == 0o700
        yield folder
    finally:
        stop_servers_under(folder)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not (REPO / ".git").exists(), reason=f"{REPO} is not a git checkout")
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.skipif(docker_available(), reason="with Docker the demo uses containers instead")
def test_a_clone_in_a_private_folder_starts_the_demos_servers(private_folder: Path) -> None:
    clone = private_folder / "specstress"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=60)
    relocated = relocated_postgres_dir(clone / ".specstress" / "postgres")
    environ = {k: v for k, v in os.environ.items() if k not in {"NATS_URL", "DATABASE_URL"}}
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=clone,
            env={**environ, "PYTHONPATH": str(clone / "shared")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        said, report = done.stdout.strip().rsplit("\n", 1)
        found = json.loads(report)
        assert Path(found["library"]).is_relative_to(clone)  # the clone's code, not ours
        assert found["sources"] == ["private", "private"]
        assert found["user"] == "postgres"
        state_dir = Path(found["state_dir"])
        assert said.startswith(f"state in {state_dir} ")
        postgres_dir = Path(found["postgres_dir"])
        if os.geteuid() == 0:
            # PostgreSQL runs as another user, who cannot enter the clone: a private temp folder
            assert postgres_dir == relocated
            assert found["owner"] != 0 and found["mode"] == 0o700
            assert (state_dir / "postgres").readlink() == relocated
            assert f"PostgreSQL's data in {relocated}" in said
            assert private_folder.stat().st_mode & 0o777 == 0o700
        else:
            assert postgres_dir == state_dir / "postgres"

        if shutil.which("make") is not None:
            cleaned = subprocess.run(
                ["make", "clean"], cwd=clone, capture_output=True, text=True, check=False
            )
            assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
            assert not state_dir.exists() and not relocated.exists()
    finally:
        stop_servers_under(relocated)
        shutil.rmtree(relocated, ignore_errors=True)
