"""Errors a user can cause or meet at the command line: the installed `specstress` script prints
one line naming the problem and what to do, exits with 2, and shows a traceback only when asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from specstress.local.servers import free_port
from tests.paths import DEMO_CONFIG

SCRIPT = Path(sys.executable).parent / "specstress"


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPECSTRESS_")}
    environ.pop("NATS_URL", None)
    environ.pop("DATABASE_URL", None)
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    output = done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, output
    assert "Traceback" not in output and "╭" not in output, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for part in expected:
        assert part in lines[0], output
    return lines[0]


@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_bad_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("sampling: {pairs: 3, nonsense: 1}\n")
    _assert_one_line(_run(["status", "-c", "bad.yaml"], tmp_path), "bad.yaml", "nonsense")


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_bad_arguments_are_one_line_pointing_at_help(tmp_path: Path) -> None:
    _assert_one_line(_run(["run", "--pairs", "many"], tmp_path), "--pairs", "specstress run --help")


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_unreachable_postgres_is_one_line(tmp_path: Path, closed_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/specstress"
    done = _run(["status", "-c", str(DEMO_CONFIG)], tmp_path, DATABASE_URL=url)
    _assert_one_line(done, "cannot connect", "DATABASE_URL")
    # asked for, the traceback is there
    debug = _run(["status", "--debug", "-c", str(DEMO_CONFIG)], tmp_path, DATABASE_URL=url)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "ConnectionRefusedError" in debug.stderr


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_unreachable_nats_is_one_line(tmp_path: Path, database_url: str, closed_port: int) -> None:
    done = _run(
        ["init", "-c", str(DEMO_CONFIG)],
        tmp_path,
        DATABASE_URL=database_url,
        NATS_URL=f"nats://127.0.0.1:{closed_port}",
    )
    _assert_one_line(done, f"NATS at 127.0.0.1:{closed_port} does not answer", "NATS_URL")


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
def test_a_private_server_that_fails_to_start_is_one_line(server_tmp_path: Path) -> None:
    # a data folder PostgreSQL cannot use: it claims a cluster but holds nothing else
    pgdata = server_tmp_path / "state" / "postgres" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")
    done = _run(
        ["demo", "-c", str(DEMO_CONFIG), "--state-dir", "state", "--pairs", "1"], server_tmp_path
    )
    line = _assert_one_line(done, "PostgreSQL did not start", "postgres.log")
    assert "\n" not in line
