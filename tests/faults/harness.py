"""The one harness every fault case runs on: a run on the simulator, an injection, healing, the
wait for empty backlogs, then the figures that say what the fault cost.

Figures per case (`Figures`): lost work (every scenario x active target answered and
classified, every pair with scenarios given spectra, every scenario aggregated, every answer of
an in-spec family to a flagged scenario judged by every judge, every sampled pair's three
variants written or dropped), duplicate rows and duplicate events, paid duplicate calls (what
the simulator answered in full minus the ledger's paid rows: a provider bills both), the bound
on those (the calls in flight at the moment of the injection: requests the simulator had
received minus ledger rows already written) and dead letters, which must be exactly the
poison the case published. `record` prints one table row per case and appends them to
bench/results.jsonl.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import yaml
from nats.js import JetStreamContext
from sqlalchemy import text

from bench.recording import RESULTS, git_commit
from specstress.api import initialise, start_run
from specstress.config import Config, load_config
from specstress.db.engine import create_engine
from specstress.local.cluster import Cluster, start_cluster
from specstress.local.servers import ManagedServer, start_nats
from specstress.local.stack import SIM_URL_ENV, Stack, wait_until_idle
from specstress.pipeline.bus import SUBSCRIPTIONS, Consumer, connect
from tests.paths import DEMO_CONFIG
from tests.support.pipeline_harness import rows

PAIRS = 6
SEED = 11
IDLE_TIMEOUT = 300.0
# short enough that a killed or stopped worker's messages come back within seconds
SUITE_BUS = {"ack_wait_seconds": 3, "defer_seconds": 5, "max_deliver": 5}
# a hanging provider is given up on after this; retries back off briefly
SUITE_TIMEOUTS = {"connect_seconds": 5, "read_seconds": 4}
SUITE_RETRY = {"max_attempts": 6, "base_seconds": 0.2, "cap_seconds": 2}
# provider latency, so that a fault finds calls in flight (with none, no case could pay twice)
SUITE_LATENCY = {"median_ms": 300, "p95_ms": 900}

# (subject's event, the row count it announces): one event per row, so more means a duplicate
_ONE_EVENT_PER_ROW = (
    ("scenarios.created", "scenarios"),
    ("responses.created", "responses"),
    ("spectra.created", "spectra"),
    ("verdicts.created", "verdicts"),
)


@dataclass
class Figures:
    case: str
    lost: int
    duplicate_rows: int
    duplicate_events: int
    paid_duplicates: int
    in_flight: int | None
    dead_letters: int
    poison: int
    paid_calls: int
    seconds: float
    detail: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        bound = "-" if self.in_flight is None else str(self.in_flight)
        return (
            f"{self.case:<34} {self.lost:>4} {self.duplicate_rows:>4} {self.duplicate_events:>4} "
            f"{self.paid_duplicates:>5} {bound:>6} {self.dead_letters:>4}/{self.poison:<4} "
            f"{self.paid_calls:>6} {self.seconds:>6.0f}"
        )


HEADER = (
    f"{'case':<34} {'lost':>4} {'dupR':>4} {'dupE':>4} {'paidD':>5} {'bound':>6} "
    f"{'dead/poison':<9} {'paid':>6} {'secs':>6}"
)


class Bus:
    """The NATS under a run: one server or a cluster, killable and restartable in place."""

    def __init__(self, folder: Path, cluster_size: int = 0) -> None:
        self.folder = folder
        self.cluster: Cluster | None = None
        self.server: ManagedServer | None = None
        if cluster_size:
            self.cluster = start_cluster(folder / "cluster", cluster_size)
        else:
            self.server = start_nats(folder / "nats")

    @property
    def url(self) -> str:
        if self.cluster is not None:
            return self.cluster.url
        assert self.server is not None
        return self.server.url

    def kill(self) -> None:
        """kill -9 of the single server."""
        assert self.server is not None
        os.kill(self.server.pid, signal.SIGKILL)
        if self.server.process is not None:
            self.server.process.wait(timeout=30)

    def restart(self) -> None:
        """The single server again, on the same port and store."""
        assert self.server is not None
        self.server = start_nats(self.folder / "nats", port=self.server.port, timeout=60)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.server is not None:
            self.server.stop()


class FaultRun:
    """A stack on the demo config (suite settings on top) with its own NATS and simulator."""

    def __init__(self, root: Path, database_url: str, bus: Bus, config_path: Path) -> None:
        self.root = root
        self.database_url = database_url
        self.bus = bus
        self.config_path = config_path
        self.stack = Stack(
            config_path=config_path,
            log_dir=root / "logs",
            env={"NATS_URL": bus.url, "DATABASE_URL": database_url},
        )
        self.sim_url = ""
        self.poison: set[tuple[str, str]] = set()
        self.poison_published: Counter[str] = Counter()
        self.started = time.monotonic()
        self._config: Config | None = None
        self.peak_connections = 0
        self._sampler: asyncio.Task[None] | None = None

    @property
    def config(self) -> Config:
        assert self._config is not None
        return self._config

    # --- set-up ---------------------------------------------------------------------------

    async def open(
        self,
        conditions: dict[str, Any] | None,
        replicas: int,
        edit: Callable[[dict[str, Any], str], None] | None,
        *,
        require_key: bool,
        env: dict[str, str],
    ) -> None:
        conditions_path = self.root / "conditions.yaml"
        conditions_path.write_text(
            yaml.safe_dump({"seed": 1, "latency": SUITE_LATENCY, **(conditions or {})})
        )
        self.stack.env.update(env)
        self.sim_url = self.stack.start_simulator(
            conditions=conditions_path, require_key=require_key
        )
        raw = yaml.safe_load(DEMO_CONFIG.read_text())
        raw["nats_url"] = self.bus.url
        raw["database_url"] = self.database_url
        for model in raw["models"]:
            model["base_url"] = self.stack.env[SIM_URL_ENV]
            model["timeouts"] = SUITE_TIMEOUTS
            model["retry"] = SUITE_RETRY
        raw["embedding"]["base_url"] = self.stack.env[SIM_URL_ENV]
        raw["bus"] = {**SUITE_BUS, "replicas": 3 if self.bus.cluster else 1}
        raw["llm"] = {"ledger": {"spill_dir": str(self.root / "spill"), "hold_seconds": 60}}
        if edit is not None:
            edit(raw, self.sim_url)
        self.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the config may name key variables the test process must see
        try:
            self._config = load_config(self.config_path)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        await initialise(self.config)
        self.stack.start_services(replicas)
        self._sampler = asyncio.create_task(self._sample_connections())

    async def _sample_connections(self) -> None:
        """The most Postgres connections the run's database had open at once (for sizing)."""
        engine = create_engine(self.database_url, pool_size=1)
        try:
            while True:
                try:
                    async with engine.connect() as conn:
                        open_now = await conn.scalar(
                            text(
                                "SELECT count(*) FROM pg_stat_activity"
                                " WHERE datname = current_database()"
                            )
                        )
                    self.peak_connections = max(self.peak_connections, int(open_now or 0) - 1)
                except Exception:  # the server may be down on purpose; sample again later
                    pass
                await asyncio.sleep(0.5)
        finally:
            await engine.dispose()

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)

    # --- driving the run ------------------------------------------------------------------

    async def start(self, pairs: int = PAIRS, seed: int = SEED) -> None:
        self.started = time.monotonic()
        await start_run(self.config, pairs, seed)

    async def count(self, sql: str) -> int:
        return int((await rows(self.database_url, f"SELECT count(*) AS n FROM {sql}"))[0]["n"])

    async def until(self, sql: str, at_least: int, timeout: float = 120.0) -> None:
        """Wait until `SELECT count(*) FROM sql` reaches `at_least` (mid-run, before a fault)."""
        deadline = time.monotonic() + timeout
        while await self.count(sql) < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sql} did not reach {at_least} within {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def until_in_flight(self, at_least: int, timeout: float = 120.0) -> None:
        """Wait until at least `at_least` provider calls are unrecorded in the ledger at once."""
        deadline = time.monotonic() + timeout
        while True:
            written = await self.ledger_rows()
            received = (await self.sim_totals()).get("requests", 0)
            if received - written >= at_least:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"never {at_least} calls in flight within {timeout:.0f} s")
            await asyncio.sleep(0.02)

    async def ledger_rows(self) -> int:
        return await self.count("llm_calls")

    async def sim_totals(self) -> dict[str, int]:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(f"{self.sim_url}/sim/stats")
        reply.raise_for_status()
        totals: dict[str, int] = reply.json()["totals"]
        return totals

    async def set_conditions(self, conditions: dict[str, Any]) -> None:
        """Replace the simulator's conditions (the suite's latency stays unless replaced)."""
        wanted = {"seed": 1, "latency": SUITE_LATENCY, **conditions}
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.put(f"{self.sim_url}/sim/conditions", json=wanted)
        reply.raise_for_status()

    async def inject(self, fault: Callable[[], Awaitable[None] | None]) -> int:
        """Run `fault` and return the calls in flight at that moment: requests the simulator
        had received (read after the fault) minus ledger rows written (read before it)."""
        written = await self.ledger_rows()
        result = fault()
        if result is not None:
            await result
        received = (await self.sim_totals()).get("requests", 0)
        return max(0, received - written)

    def kill(self, name: str) -> None:
        self.stack.kill(name)

    def signal(self, name: str, sig: int) -> None:
        self.stack.processes[name].popen.send_signal(sig)

    def restart(self, name: str) -> None:
        service, _, replica = name.partition("-")
        self.stack.start_service(service, int(replica or 0))

    async def poison_every_subject(self, payloads: list[bytes]) -> None:
        """Publish each payload on every consumed subject; each consumer of the subject must
        dead-letter each of them once."""
        client = await connect(self.bus.url, "specstress-fault-poison")
        try:
            js = client.jetstream()
            for event in {e for events in SUBSCRIPTIONS.values() for e in events}:
                for index, payload in enumerate(payloads):
                    await js.publish(
                        event.subject,
                        payload,
                        headers={"Nats-Msg-Id": f"poison-{event.subject}-{index}"},
                    )
                    self.poison_published[event.subject] += 1
                    for service, events in SUBSCRIPTIONS.items():
                        if event in events:
                            durable = Consumer(service, event).durable
                            self.poison.add((durable, payload.decode(errors="replace")))
        finally:
            await client.close()

    async def stream_leader(self, timeout: float = 60.0) -> str:
        """The cluster node that leads the stream, once one does (after a node was killed or
        came back, the stream may be electing one)."""
        client = await connect(self.bus.url, "specstress-fault-leader")
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    info = await client.jetstream().stream_info(self.config.bus.stream)
                    if info.cluster is not None and info.cluster.leader:
                        return info.cluster.leader
                except nats.errors.Error:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no stream leader within {timeout:.0f} s")
                await asyncio.sleep(0.5)
        finally:
            await client.close()

    async def snapshot(self) -> dict[str, int]:
        """Rows of every fact table and the ledger, and the requests the simulator received."""
        tables = ("value_pairs", "scenarios", "scenario_drops", "responses", "spectra",
                  "classifications", "disagreement", "verdicts", "llm_calls", "dead_letters")  # fmt: skip
        counts = {table: await self.count(table) for table in tables}
        counts["simulator_requests"] = (await self.sim_totals()).get("requests", 0)
        return counts

    async def settle(self, timeout: float = IDLE_TIMEOUT) -> None:
        await wait_until_idle(self.config, timeout=timeout, stack=self.stack)

    # --- figures ----------------------------------------------------------------------------

    async def figures(self, case: str, in_flight: int | None) -> Figures:
        lost = await self._lost()
        duplicates = await self._duplicate_rows()
        events = await self._duplicate_events()
        paid = await self.count("llm_calls WHERE status = 'ok'")
        served = (await self.sim_totals()).get("ok", 0)
        letters = await rows(
            self.database_url, "SELECT consumer, payload, deliveries FROM dead_letters"
        )
        found = {(str(r["consumer"]), str(r["payload"])) for r in letters}
        stray = len(found ^ self.poison) + sum(1 for r in letters if r["deliveries"] != 1)
        return Figures(
            case=case,
            lost=sum(lost.values()),
            duplicate_rows=sum(duplicates.values()),
            duplicate_events=sum(events.values()),
            paid_duplicates=served - paid,
            in_flight=in_flight,
            dead_letters=len(letters),
            poison=len(self.poison),
            paid_calls=paid,
            seconds=time.monotonic() - self.started,
            detail={
                "peak_db_connections": self.peak_connections,
                **self._log_counts(),
                **{f"lost_{k}": v for k, v in lost.items() if v},
                **{f"dup_{k}": v for k, v in duplicates.items() if v},
                **{f"dup_event_{k}": v for k, v in events.items() if v},
                **({"dead_letters_not_poison": stray} if stray else {}),
            },
        )

    def _log_counts(self) -> dict[str, int]:
        """How often the services held a paid answer, spilled one, or waited out an outage."""
        text = "".join(
            path.read_text(errors="replace") for path in self.stack.log_dir.glob("*.log")
        )
        counts = {
            "answers_held": text.count("holding the paid answer"),
            "answers_spilled": text.count("spilled to"),
            "outage_waits": text.count("waiting for it"),
            "deferrals": text.count(": deferred for "),
        }
        return {key: value for key, value in counts.items() if value}

    async def _lost(self) -> dict[str, int]:
        families = sorted({f for spec in self.config.specs for f in spec.families})
        in_spec = ", ".join(f"'{f}'" for f in families) or "NULL"
        judges = len(self.config.roles.judges)
        counts = (
            await rows(
                self.database_url,
                f"""
                SELECT
                  (SELECT 3 * count(*) FROM value_pairs)
                    - (SELECT count(*) FROM scenarios) - (SELECT count(*) FROM scenario_drops)
                    AS scenarios,
                  (SELECT count(*) FROM scenarios s CROSS JOIN models m
                    WHERE m.active AND NOT EXISTS (SELECT 1 FROM responses r
                      WHERE r.scenario_id = s.scenario_id AND r.model_key = m.model_key))
                    AS responses,
                  (SELECT count(*) FROM responses r WHERE NOT EXISTS
                    (SELECT 1 FROM classifications c WHERE c.response_id = r.response_id))
                    AS classifications,
                  (SELECT count(DISTINCT s.pair_id) FROM scenarios s WHERE NOT EXISTS
                    (SELECT 1 FROM spectra p WHERE p.pair_id = s.pair_id)) AS spectra,
                  (SELECT count(*) FROM scenarios s WHERE NOT EXISTS
                    (SELECT 1 FROM disagreement d WHERE d.scenario_id = s.scenario_id))
                    AS aggregates,
                  (SELECT {judges} * count(*) FROM responses r JOIN models m USING (model_key)
                    WHERE m.family IN ({in_spec}) AND r.scenario_id IN
                      (SELECT scenario_id FROM disagreement WHERE high))
                    - (SELECT count(DISTINCT (response_id, judge)) FROM verdicts)
                    AS verdicts
                """,
            )
        )[0]
        return {key: int(value) for key, value in counts.items()}

    async def _duplicate_rows(self) -> dict[str, int]:
        counts = (
            await rows(
                self.database_url,
                """
                SELECT
                  (SELECT count(*) - count(DISTINCT (pair_id, variant)) FROM scenarios)
                    AS scenarios,
                  (SELECT count(*) - count(DISTINCT (scenario_id, model_key)) FROM responses)
                    AS responses,
                  (SELECT count(*) - count(DISTINCT pair_id) FROM spectra) AS spectra,
                  (SELECT count(*) - count(DISTINCT response_id) FROM classifications)
                    AS classifications,
                  (SELECT count(*) - count(DISTINCT (scenario_id, model_set)) FROM disagreement)
                    AS disagreement,
                  (SELECT count(*) - count(DISTINCT (response_id, judge, spec_id, spec_version))
                    FROM verdicts) AS verdicts,
                  (SELECT count(*) - count(DISTINCT request_hash) FROM llm_calls
                    WHERE status = 'ok') AS paid_answers
                """,
            )
        )[0]
        return {key: int(value) for key, value in counts.items()}

    async def _duplicate_events(self) -> dict[str, int]:
        """Events on the stream beyond one per row they announce."""
        client = await connect(self.bus.url, "specstress-fault-count")
        try:
            js: JetStreamContext = client.jetstream()
            info = await js.stream_info(self.config.bus.stream, subjects_filter=">")
            per_subject = info.state.subjects or {}
        finally:
            await client.close()
        found = {}
        for suffix, table in _ONE_EVENT_PER_ROW:
            subject = f"specstress.{suffix}"
            published = per_subject.get(subject, 0) - self.poison_published[subject]
            found[suffix] = published - await self.count(table)
        return found


@asynccontextmanager
async def fault_run(
    root: Path,
    database_url: str,
    *,
    conditions: dict[str, Any] | None = None,
    replicas: int = 1,
    cluster_size: int = 0,
    edit: Callable[[dict[str, Any], str], None] | None = None,
    require_key: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[FaultRun]:
    """Own NATS (or cluster) under `root`, the simulator under `conditions` (on top of the
    suite's latency), every service
    (`replicas` of each) on the demo config with the suite's settings; all stopped after."""
    bus = Bus(root, cluster_size)
    run = FaultRun(root, database_url, bus, root / "specstress.yaml")
    try:
        await run.open(conditions, replicas, edit, require_key=require_key, env=env or {})
        yield run
    finally:
        await run.close()
        run.stack.stop()
        bus.stop()


RECORDED: list[Figures] = []


def record(figures: Figures) -> None:
    """Keep the case's row for the session's table and append it to bench/results.jsonl."""
    RECORDED.append(figures)
    entry = {
        "benchmark": "faults",
        "commit": git_commit(),
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        **asdict(figures),
    }
    with RESULTS.open("a") as out:
        out.write(json.dumps(entry) + "\n")


def poison_payloads() -> list[bytes]:
    """Messages no consumer can use: not JSON, JSON of the wrong shape, an unknown version."""
    return [b"{not json", b'{"schema_version": 1}', b'{"schema_version": 99}']
