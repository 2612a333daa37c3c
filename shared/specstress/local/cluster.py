"""A JetStream cluster of nats-server processes on the loopback, for the fault suite and for
trying out a replicated stream without Docker.

Each node keeps its store, config and log under `<folder>/<name>`, fsyncs every write
(`sync_interval: always`) and routes to the others; a node that was killed comes back on the
same ports and store with `restart`. Clients connect with `url`, every node's address joined
by commas (see `specstress.pipeline.bus.servers`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from specstress.local.servers import (
    LOOPBACK,
    ServerStartError,
    StopsOnExit,
    free_port,
    jetstream_ready,
    nats_server_binary,
)

__all__ = ["Cluster", "ClusterNode", "start_cluster"]

_POLL_SECONDS = 0.1


@dataclass(eq=False)
class ClusterNode:
    name: str
    folder: Path
    port: int
    cluster_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.folder / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.folder / "nats.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(eq=False)
class Cluster(StopsOnExit):
    """Three (or more) nodes; `stop()` ends the ones still running."""

    folder: Path
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no cluster node named {name!r}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        node = self.node(name)
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(sig)
            node.process.wait(timeout=30)

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start a stopped node again on its ports and store, and wait until it answers."""
        node = self.node(name)
        if node.running():
            raise RuntimeError(f"{name} is still running")
        _spawn(node)
        _wait_until(lambda: _answers(node), timeout, f"{name} did not come back", [node])

    def stop(self) -> None:
        for node in self.nodes:
            if node.running() and node.process is not None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


def start_cluster(folder: Path, size: int = 3, timeout: float = 60.0) -> Cluster:
    """Start `size` clustered nodes under `folder` and wait until JetStream answers on every
    one (which needs a meta leader, so a quorum of the nodes)."""
    if size < 1:
        raise ValueError("a cluster needs at least one node")
    folder = folder.resolve()
    taken: set[int] = set()

    def port() -> int:
        chosen = free_port(exclude=frozenset(taken))
        taken.add(chosen)
        return chosen

    cluster = Cluster(folder)
    for index in range(1, size + 1):
        name = f"n{index}"
        cluster.nodes.append(ClusterNode(name, folder / name, port(), port(), port()))
    for node in cluster.nodes:
        node.folder.mkdir(parents=True, exist_ok=True)
        node.config_file.write_text(_config(node, cluster.nodes))
    try:
        for node in cluster.nodes:
            _spawn(node)
        _wait_until(
            lambda: all(_answers(node) for node in cluster.nodes),
            timeout,
            "the cluster did not form",
            cluster.nodes,
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _config(node: ClusterNode, nodes: list[ClusterNode]) -> str:
    routes = [f"nats-route://{LOOPBACK}:{n.cluster_port}" for n in nodes if n is not node]
    # JSON strings are valid NATS config strings, and quote paths safely
    return "\n".join(
        [
            f"server_name: {json.dumps(node.name)}",
            f"listen: {json.dumps(f'{LOOPBACK}:{node.port}')}",
            f"http: {json.dumps(f'{LOOPBACK}:{node.http_port}')}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(node.folder / 'jetstream'))}",
            "  sync_interval: always",
            "}",
            "cluster {",
            '  name: "specstress"',
            f"  listen: {json.dumps(f'{LOOPBACK}:{node.cluster_port}')}",
            f"  routes: {json.dumps(routes)}",
            "}",
            "",
        ]
    )


def _spawn(node: ClusterNode) -> None:
    with node.log_path.open("ab") as log:
        node.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(node.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(os.environ),
        )


def _answers(node: ClusterNode) -> bool:
    return node.running() and jetstream_ready(node.url)


def _wait_until(
    ready: Callable[[], bool], timeout: float, message: str, nodes: list[ClusterNode]
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for node in nodes:
            if node.process is not None and node.process.poll() is not None:
                raise ServerStartError(f"{node.name} exited; see {node.log_path}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"{message} within {timeout:.0f} s; see {nodes[0].log_path}")
        time.sleep(_POLL_SECONDS)
