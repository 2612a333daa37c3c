"""Whole-pipeline throughput: private NATS and Postgres, the simulator, six services as processes.

Run with `make bench` (or `python bench/pipeline.py --help`). It pushes value pairs through every
stage exactly as the demo does, then reads the figures from the database it filled:
- LLM calls per second end to end, counted from the ledger after a warm-up;
- calls per second per stage;
- p50/p95 time from a pair's publication to its last derived row (verdict, disagreement ...);
- CPU seconds and peak RSS of every process (Postgres and NATS included), and the simulator's
  share of the CPU;
- with replicas, the messages each replica handled (from its /metrics), to show the work shared;
- correctness: no duplicate rows, no request paid twice (the simulator's count of answers it
  served against the ledger's paid rows), every scenario answered by every model and every
  answer classified, no dead letters.
It prints a table and appends one JSON line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from bench import peers
from bench.database import private_servers
from bench.recording import CLOCK_TICKS, cpu_seconds, header, proc_stat, record
from specstress.api import initialise, start_run
from specstress.config import load_config
from specstress.db.engine import create_engine
from specstress.local.stack import SIM_URL_ENV, Stack, wait_until_idle
from specstress.pipeline.bus import connect, consumers

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "specstress.demo.yaml"

PAIR_LATENCY = """
WITH finished AS (
    SELECT p.pair_id, p.created_at AS published, greatest(
        (SELECT max(created_at) FROM scenarios s WHERE s.pair_id = p.pair_id),
        (SELECT max(created_at) FROM scenario_drops d WHERE d.pair_id = p.pair_id),
        (SELECT max(r.created_at) FROM responses r JOIN scenarios s USING (scenario_id)
         WHERE s.pair_id = p.pair_id),
        (SELECT max(created_at) FROM spectra x WHERE x.pair_id = p.pair_id),
        (SELECT max(c.created_at) FROM classifications c JOIN scenarios s USING (scenario_id)
         WHERE s.pair_id = p.pair_id),
        (SELECT max(d.computed_at) FROM disagreement d JOIN scenarios s USING (scenario_id)
         WHERE s.pair_id = p.pair_id),
        (SELECT max(v.created_at) FROM verdicts v JOIN scenarios s USING (scenario_id)
         WHERE s.pair_id = p.pair_id)) AS done
    FROM value_pairs p)
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM done - published)) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM done - published)) AS p95
FROM finished
"""

CALL_RATES = """
SELECT stage, count(*) AS calls, extract(epoch FROM max(created_at) - min(created_at)) AS span
FROM llm_calls WHERE status = 'ok' AND created_at >= :since GROUP BY stage ORDER BY stage
"""

TOTAL_RATE = """
SELECT count(*) AS calls, extract(epoch FROM max(created_at) - min(created_at)) AS span
FROM llm_calls WHERE status = 'ok' AND created_at >= :since
"""

# every paid call from the run's start, like the peers' figures (bench/peers.py)
WHOLE_RUN = """
SELECT count(*) AS calls, extract(epoch FROM max(created_at)) AS last
FROM llm_calls WHERE status = 'ok'
"""

CHECKS = """
SELECT (SELECT count(*) FROM responses) - (SELECT count(DISTINCT (scenario_id, model_key))
        FROM responses) AS duplicate_responses,
       (SELECT count(*) FROM llm_calls WHERE status = 'ok') AS paid_calls,
       (SELECT count(*) FROM scenarios) AS scenarios,
       (SELECT count(*) FROM scenarios) * (SELECT count(*) FROM models WHERE active)
       - (SELECT count(*) FROM responses) AS missing_responses,
       (SELECT count(*) FROM responses r WHERE NOT EXISTS
        (SELECT 1 FROM classifications c WHERE c.response_id = r.response_id))
       AS unclassified_responses,
       (SELECT count(*) FROM verdicts) AS verdicts,
       (SELECT count(*) FROM dead_letters) AS dead_letters
"""
# every figure a run's JSON line carries (the smoke test checks them all)
FIGURES = (
    "llm_calls_per_second",
    "llm_calls_measured",
    "llm_calls_per_second_whole_run",
    "per_stage_calls_per_second",
    "pair_latency_seconds",
    "processes",
    "simulator_cpu_share",
    "postgres_cpu_share",
    "replica_messages",
    "bus",
    "checks",
)
PROBLEMS = (
    "duplicate_responses",
    "duplicate_paid_calls",
    "missing_responses",
    "unclassified_responses",
    "dead_letters",
)


@dataclass
class ProcessUsage:
    name: str
    cpu_seconds: float
    peak_rss_mib: float


def _server_cpu_seconds(pid: int) -> float:
    """A server with its children: Postgres runs a backend process per connection, and the
    CPU of backends that already exited is in the postmaster's children's time (cutime, cstime)."""
    fields = proc_stat(pid)
    total = sum(int(f) for f in fields[11:15])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = proc_stat(int(entry.name))
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(child[1]) == pid:
            total += int(child[11]) + int(child[12])
    return total / CLOCK_TICKS


def _postmaster_pid(folder: Path) -> int:
    return int((folder / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])


async def _handled(client: httpx.AsyncClient, port: int) -> int:
    """Messages a service process finished handling (all subjects, all outcomes)."""
    reply = await client.get(f"http://127.0.0.1:{port}/metrics")
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in reply.text.splitlines()
            if line.startswith("specstress_messages_handled_total{")
        )
    )


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_config(folder: Path, targets: int) -> Path:
    """The demo config with `targets` target models (personas reused with distinct seeds)."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    # the demo's target personas, reused in turn when more targets are asked for
    personas: list[str] = config["roles"]["targets"]
    base = next(m for m in config["models"] if m["key"] == personas[0])
    targets_keys = []
    models = [m for m in config["models"] if m["family"] == "simulator"]
    for index in range(targets):
        persona = personas[index % len(personas)]
        key = persona if index < len(personas) else f"{persona}-{index}"
        models.append(
            {
                **base,
                "key": key,
                "family": persona.split("-")[0],
                "model_id": persona,
                # a distinct seed keeps reused personas from sharing cached answers
                "params": {"temperature": 0.0, "seed": index},
                "max_concurrency": 256,
            }
        )
        targets_keys.append(key)
    for model in models:
        model["max_concurrency"] = 256
    config["models"] = models
    config["roles"]["targets"] = targets_keys
    config["model_sets"] = {"all": ["*"], "aurora": ["family:aurora"]}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(sql), params)]
    finally:
        await engine.dispose()


async def _bus_counts(url: str, stream: str) -> dict[str, int]:
    """Messages the run put on the stream, and deliveries to all consumers (redeliveries too)."""
    client = await connect(url, "bench")
    try:
        js = client.jetstream()
        info = await js.stream_info(stream)
        delivered = 0
        for consumer in consumers():
            state = await js.consumer_info(stream, consumer.durable)
            delivered += state.delivered.consumer_seq if state.delivered else 0
        return {"messages": info.state.messages, "deliveries": delivered}
    finally:
        await client.close()


async def run(
    args: argparse.Namespace, running: asyncio.Future[dict[str, int]] | None = None
) -> dict[str, Any]:
    """The run's figures; `running`, if given, gets every process's pid once the pairs are out."""
    load_at_start = os.getloadavg()
    async with private_servers("pipeline") as servers:
        stack: Stack | None = None
        try:
            config_path = bench_config(servers.folder, args.targets)
            stack = Stack(config_path=config_path, log_dir=servers.folder / "logs", env=servers.env)
            stack.start_simulator()
            os.environ[SIM_URL_ENV] = stack.env[SIM_URL_ENV]
            config = load_config(config_path)
            await initialise(config)
            for service in (
                "scenario_generator",
                "spectrum_builder",
                "aggregator",
                "compliance_judge",
            ):
                stack.start_service(service)
            for service in ("responder", "classifier"):
                for replica in range(args.replicas):
                    stack.start_service(service, replica)
            server_pids = {"postgres": _postmaster_pid(servers.folder), "nats": servers.nats.pid}
            cpu_start = {name: cpu_seconds(p.popen.pid) for name, p in stack.processes.items()}
            cpu_start |= {name: _server_cpu_seconds(pid) for name, pid in server_pids.items()}
            started = time.time()
            await start_run(config, args.pairs, args.seed)
            if running is not None:
                running.set_result({name: p.popen.pid for name, p in stack.processes.items()})
            await wait_until_idle(config, timeout=args.timeout, quiet_seconds=2.0, stack=stack)
            elapsed = time.time() - started
            usage = [
                ProcessUsage(
                    name,
                    cpu_seconds(p.popen.pid) - cpu_start[name],
                    _peak_rss_mib(p.popen.pid),
                )
                for name, p in stack.processes.items()
            ]
            usage += [
                ProcessUsage(name, _server_cpu_seconds(pid) - cpu_start[name], _peak_rss_mib(pid))
                for name, pid in server_pids.items()
            ]
            since = datetime.fromtimestamp(started + elapsed * args.warmup_share, tz=UTC)
            total = (await _query(servers.database_url, TOTAL_RATE, since=since))[0]
            whole = (await _query(servers.database_url, WHOLE_RUN))[0]
            stages = await _query(servers.database_url, CALL_RATES, since=since)
            latency = (await _query(servers.database_url, PAIR_LATENCY))[0]
            checks = (await _query(servers.database_url, CHECKS))[0]
            bus_counts = await _bus_counts(servers.nats.url, config.bus.stream)
            async with httpx.AsyncClient() as client:
                reply = await client.get(stack.env[SIM_URL_ENV].removesuffix("/v1") + "/sim/stats")
                reply.raise_for_status()
                served = reply.json()["totals"].get("ok", 0)
                replica_messages = {
                    name: await _handled(client, p.metrics_port)
                    for name, p in stack.processes.items()
                    if name.split("-")[0] in ("responder", "classifier") and p.metrics_port
                }
            # the ledger keeps one paid row per request hash, so a request bought twice shows only
            # as an answer the simulator served beyond the ledger's rows
            checks["simulator_answers"] = served
            checks["duplicate_paid_calls"] = served - checks["paid_calls"]
        finally:
            if stack is not None:
                stack.stop()
    total_cpu = sum(u.cpu_seconds for u in usage) or 1.0
    sim_cpu = sum(u.cpu_seconds for u in usage if u.name == "llm_sim")
    postgres_cpu = sum(u.cpu_seconds for u in usage if u.name == "postgres")
    span = float(total["span"] or 0.0)
    return {
        **header("pipeline"),
        "parameters": {
            "pairs": args.pairs,
            "targets": args.targets,
            "judges": 3,
            "replicas": args.replicas,
            "seed": args.seed,
            "warmup_share": args.warmup_share,
        },
        "wall_seconds": round(elapsed, 2),
        "llm_calls_per_second": round(total["calls"] / span, 1) if span else None,
        "llm_calls_measured": total["calls"],
        # from the first pair's publication to the last paid answer, warm-up included
        "llm_calls_per_second_whole_run": round(
            whole["calls"] / (float(whole["last"]) - started), 1
        ),
        "per_stage_calls_per_second": {
            s["stage"]: round(s["calls"] / float(s["span"]), 1) if s["span"] else None
            for s in stages
        },
        "pair_latency_seconds": {
            "p50": round(float(latency["p50"]), 2),
            "p95": round(float(latency["p95"]), 2),
        },
        "processes": [
            {
                "name": u.name,
                "cpu_seconds": round(u.cpu_seconds, 2),
                "peak_rss_mib": round(u.peak_rss_mib, 1),
            }
            for u in usage
        ],
        "simulator_cpu_share": round(sim_cpu / total_cpu, 3),
        "postgres_cpu_share": round(postgres_cpu / total_cpu, 3),
        "replica_messages": replica_messages,
        "bus": bus_counts,
        # other work on the machine moves every figure: the 1-minute load before and after
        "load_average": [round(load_at_start[0], 2), round(os.getloadavg()[0], 2)],
        "checks": checks,
    }


def report(result: dict[str, Any]) -> None:
    console = Console(width=120)
    table = Table("figure", "value", title=f"pipeline benchmark @ {result['commit']}")
    table.add_row("LLM calls/s end to end", str(result["llm_calls_per_second"]))
    table.add_row("LLM calls/s, whole run", str(result["llm_calls_per_second_whole_run"]))
    for stage, rate in result["per_stage_calls_per_second"].items():
        table.add_row(f"  {stage} calls/s", str(rate))
    table.add_row(
        "pair latency p50 / p95 (s)", "{p50} / {p95}".format(**result["pair_latency_seconds"])
    )
    table.add_row("wall time (s)", str(result["wall_seconds"]))
    table.add_row("simulator CPU share", f"{result['simulator_cpu_share']:.1%}")
    table.add_row("Postgres CPU share", f"{result['postgres_cpu_share']:.1%}")
    table.add_row("load average before / after", str(result["load_average"]))
    for name, handled in result["replica_messages"].items():
        table.add_row(f"  {name} messages handled", str(handled))
    table.add_row(
        "paid calls (ledger / simulator)",
        "{paid_calls} / {simulator_answers}".format(**result["checks"]),
    )
    for checks_key in PROBLEMS:
        table.add_row(checks_key.replace("_", " "), str(result["checks"][checks_key]))
    console.print(table)
    processes = Table("process", "CPU s", "peak RSS MiB", title="processes")
    for p in result["processes"]:
        processes.add_row(p["name"], str(p["cpu_seconds"]), str(p["peak_rss_mib"]))
    console.print(processes)
    if "peers" in result:
        beside = Table("peer", "LLM calls/s", "calls", "s", "CPU s", "specstress / peer")
        for name, figures in result["peers"].items():
            beside.add_row(
                name,
                str(figures["llm_calls_per_second"]),
                str(figures["llm_calls"]),
                str(figures["seconds"]),
                str(figures["cpu_seconds"]),
                str(result["ratios"][name]),
            )
        console.print(beside)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="value pairs to push")
    parser.add_argument("--targets", type=int, default=6, help="target models")
    parser.add_argument("--replicas", type=int, default=1, help="responder/classifier replicas")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--warmup-share", type=float, default=0.1, help="share of the run skipped")
    parser.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    parser.add_argument(
        "--peers", action="store_true", help="then run Inspect and promptfoo (bench/peers.py)"
    )
    parser.add_argument(
        "--peer-samples", type=int, default=2000, help="samples (tests) of each peer's run"
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.peers:
        peers.install()  # before the runs: installing is no part of anything measured
    result = asyncio.run(run(args))
    if args.peers:
        result["peers"] = peers.measure(args.peer_samples)
        ours = result["llm_calls_per_second_whole_run"]
        result["ratios"] = {
            name: round(ours / figures["llm_calls_per_second"], 2)
            for name, figures in result["peers"].items()
        }
    report(result)
    if not args.no_record:
        record(result)
    sys.exit(1 if any(result["checks"][key] for key in PROBLEMS) else 0)


if __name__ == "__main__":
    main()
