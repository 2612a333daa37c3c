"""Servers and processes on one machine, for the demo, the tests and the benchmarks: private
NATS and PostgreSQL (`servers`), a JetStream cluster (`cluster`), the simulator and services as
child processes (`stack`), and the least-privilege set-up of users and roles (`secure`).
"""

from specstress.local.cluster import Cluster, start_cluster
from specstress.local.secure import Credentials, start_secure_nats
from specstress.local.servers import (
    Infra,
    ManagedServer,
    ServerStartError,
    StopsOnExit,
    drop_database,
    ensure_database,
    resolve_infra,
    start_nats,
    start_postgres,
)
from specstress.local.stack import Stack, wait_until_idle

__all__ = [
    "Cluster",
    "Credentials",
    "Infra",
    "ManagedServer",
    "ServerStartError",
    "Stack",
    "StopsOnExit",
    "drop_database",
    "ensure_database",
    "resolve_infra",
    "start_cluster",
    "start_nats",
    "start_postgres",
    "start_secure_nats",
    "wait_until_idle",
]
