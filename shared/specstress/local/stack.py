"""Run the simulator and the six services as processes: the demo, the tests and the benchmark.

Each service is started exactly as a user would start it (`python -m services.<stage>`), with
NATS_URL, DATABASE_URL and the simulator's URL in its environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import nats.errors

from specstress.config import Config
from specstress.local.servers import ServerStartError, free_port
from specstress.pipeline import STAGE_NAMES, manifest
from specstress.pipeline.bus import backlog, connect

__all__ = ["SIM_URL_ENV", "Process", "Stack", "wait_until_idle"]

SIM_URL_ENV = "SPECSTRESS_SIM_URL"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int | None = None


@dataclass
class Stack:
    """The processes of one pipeline run; `stop()` ends every process it started."""

    config_path: Path
    log_dir: Path
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)
    # per service, on top of `env`: its own NATS user and Postgres role (a least-privilege run)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def _spawn(
        self, name: str, args: list[str], port: int | None = None, env: dict[str, str] | None = None
    ) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file: IO[bytes] = log_path.open("ab")
        popen = subprocess.Popen(
            [sys.executable, *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, **(env or {})},
            start_new_session=True,
        )
        log_file.close()
        process = Process(name, popen, log_path, port)
        self.processes[name] = process
        return process

    def start_simulator(
        self, latency_ms: float = 0.0, conditions: Path | None = None, *, require_key: bool = False
    ) -> str:
        """Start the simulator; `conditions` is a file of rate limits, latency and faults;
        `require_key` makes it refuse provider calls that carry no API key."""
        port = free_port()
        args = ["-m", "services.llm_sim", "--port", str(port), "--latency-ms", str(latency_ms)]
        if conditions is not None:
            args += ["--conditions", str(conditions)]
        if require_key:
            args.append("--require-key")
        self._spawn("llm_sim", args, port)
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/healthz", self.processes["llm_sim"])
        self.env[SIM_URL_ENV] = f"{url}/v1"
        return url

    def start_service(self, service: str, replica: int = 0) -> Process:
        process = self._launch(service, replica)
        _wait_http(f"http://127.0.0.1:{process.metrics_port}/healthz", process)
        return process

    def start_services(self, replicas: int = 1) -> None:
        """`replicas` processes of every service, started together (their imports overlap)."""
        launched = [self._launch(s, r) for s in STAGE_NAMES for r in range(replicas)]
        for process in launched:
            _wait_http(f"http://127.0.0.1:{process.metrics_port}/healthz", process)

    def _launch(self, service: str, replica: int) -> Process:
        port = free_port()
        name = service if replica == 0 else f"{service}-{replica}"
        args = ["-m", manifest(service).module, "--config", str(self.config_path)]
        return self._spawn(
            name, [*args, "--metrics-port", str(port)], port, self.service_env.get(service)
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.popen.send_signal(sig)
        process.popen.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.processes.clear()

    def dead(self) -> list[str]:
        return [p.name for p in self.processes.values() if p.popen.poll() is not None]


def _wait_http(url: str, process: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise ServerStartError(f"{process.name} exited while starting; see {process.log_path}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ServerStartError(
        f"{process.name} did not answer {url} within {timeout:.0f} s; see {process.log_path}"
    )


async def wait_until_idle(
    config: Config, timeout: float, quiet_seconds: float = 3.0, stack: Stack | None = None
) -> None:
    """Wait until every consumer has nothing pending or unacked for `quiet_seconds`."""
    client = await connect(config.nats_url, "specstress-wait")
    try:
        js = client.jetstream()
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if stack is not None and stack.dead():
                raise RuntimeError(f"process(es) died: {', '.join(stack.dead())}")
            try:
                busy = any(p or a for p, a in (await backlog(js, config.bus)).values())
            except nats.errors.Error:
                # no answer while a cluster elects a consumer's leader: not idle yet
                busy = True
            now = time.monotonic()
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet_seconds:
                return
            await asyncio.sleep(0.25)
        raise TimeoutError(f"the pipeline still had work after {timeout:.0f} s")
    finally:
        await client.close()
