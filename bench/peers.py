"""Peers measured beside the pipeline: Inspect and promptfoo with mock models, in LLM calls/s.

`make bench-peers` (`python -m bench.pipeline --peers`) installs both into .bench-peers/ (git
ignores it): a venv with the pinned inspect-ai from PyPI and the pinned promptfoo npm package,
each once; the pipeline run then measures them right after its own run, on the same machine.

- Inspect: `--samples` samples, `generate()` on `mockllm/model`, `model_graded_qa` graded by a
  second `mockllm/model`, minimal logging (bench/peer_inspect.py).
- promptfoo: `--samples` tests on the echo provider, each with an `llm-rubric` assertion graded
  by an OpenAI-compatible mock on loopback (bench/mock_grader.py), no cache, no results
  database, no progress bar (bench/peer_promptfoo.mjs).

Each is counted as the pipeline is: generation calls plus grader calls, over the wall clock
from the start of the evaluation to its end (the interpreter's start-up and imports excluded).
Every figure is checked: all samples scored, one grader call per sample, none failed.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from bench.recording import REPO, cpu_seconds

PEERS_DIR = REPO / ".bench-peers"
VENV = PEERS_DIR / "venv"
NODE_DIR = PEERS_DIR / "node"
STAMP = PEERS_DIR / "installed.json"
INSPECT_AI = "inspect-ai==0.3.285"
# the last release line that still runs on Node 20 (0.122 needs Node 22.22)
PROMPTFOO = "promptfoo@0.121.20"
PROMPTFOO_ENTRY = NODE_DIR / "node_modules" / "promptfoo" / "dist" / "src" / "index.js"
# parallel tests in promptfoo (its library default is 10); Inspect runs at its own default
PROMPTFOO_CONCURRENCY = 10
# promptfoo must neither phone home nor write into the user's ~/.promptfoo
PROMPTFOO_ENV = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "PROMPTFOO_DISABLE_UPDATE": "1",
    "PROMPTFOO_DISABLE_SHARING": "1",
    "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
}


def install() -> None:
    """Install both peers at their pinned versions, unless the stamp says they already are."""
    wanted = {"inspect": INSPECT_AI, "promptfoo": PROMPTFOO}
    if STAMP.exists() and json.loads(STAMP.read_text()) == wanted:
        return
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise SystemExit("bench-peers needs Node.js 20.20+ with npm on PATH for promptfoo")
    PEERS_DIR.mkdir(exist_ok=True)
    print(f"installing {INSPECT_AI} and {PROMPTFOO} into {PEERS_DIR} (a few minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", INSPECT_AI], check=True)
    NODE_DIR.mkdir(exist_ok=True)
    package = NODE_DIR / "package.json"
    if not package.exists():
        package.write_text('{"private": true}\n')
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), PROMPTFOO],
        check=True,
    )
    STAMP.write_text(json.dumps(wanted))


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """The JSON line a peer script prints last, and the CPU seconds its process tree used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[1]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(done.stdout.strip().splitlines()[-1]), cpu


def _figures(calls: int, seconds: float, cpu_seconds: float, **detail: Any) -> dict[str, Any]:
    return {
        "llm_calls_per_second": round(calls / seconds, 1),
        "llm_calls": calls,
        "seconds": round(seconds, 2),
        # the peer's processes from start-up to exit (imports included), its mock grader too
        "cpu_seconds": round(cpu_seconds, 2),
        **detail,
    }


def measure_inspect(samples: int) -> dict[str, Any]:
    out, cpu = _run(
        [
            str(VENV / "bin" / "python"),
            str(REPO / "bench" / "peer_inspect.py"),
            "--samples",
            str(samples),
        ]
    )
    if out["status"] != "success" or out["samples"] != samples or out["grader_calls"] != samples:
        raise RuntimeError(f"Inspect did not score every sample: {out}")
    return _figures(
        out["generate_calls"] + out["grader_calls"],
        out["seconds"],
        cpu,
        version=INSPECT_AI,
        samples=samples,
        generate_calls=out["generate_calls"],
        grader_calls=out["grader_calls"],
        accuracy=out["accuracy"],
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url).raise_for_status()
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure_promptfoo(tests: int) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{_free_port()}"
    grader = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_grader", "--port", base_url.rsplit(":", 1)[1]],
        cwd=REPO,
    )
    try:
        _wait_for(f"{base_url}/count")
        with tempfile.TemporaryDirectory() as config_dir:
            out, cpu = _run(
                [
                    "node",
                    str(REPO / "bench" / "peer_promptfoo.mjs"),
                    str(PROMPTFOO_ENTRY),
                    f"{base_url}/v1",
                    str(tests),
                    str(PROMPTFOO_CONCURRENCY),
                ],
                env={**PROMPTFOO_ENV, "PROMPTFOO_CONFIG_DIR": config_dir},
            )
        grader_calls = int(httpx.get(f"{base_url}/count").json()["requests"])
        cpu += cpu_seconds(grader.pid)
    finally:
        grader.terminate()
        grader.wait()
    if out["results"] != tests or out["successes"] != tests or grader_calls != tests:
        raise RuntimeError(f"promptfoo did not grade every test: {out}, grader {grader_calls}")
    return _figures(
        out["results"] + grader_calls,
        out["seconds"],
        cpu,
        version=PROMPTFOO,
        tests=tests,
        echo_calls=out["results"],
        grader_calls=grader_calls,
        concurrency=PROMPTFOO_CONCURRENCY,
    )


def measure(samples: int) -> dict[str, dict[str, Any]]:
    """Both peers, one after the other."""
    install()
    return {"inspect": measure_inspect(samples), "promptfoo": measure_promptfoo(samples)}
