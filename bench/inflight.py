"""In-flight capacity: the pipeline against the simulator answering each call after 1 s and 5 s.

Run with `make bench-inflight` (or `python -m bench.inflight --help`). For each latency it starts
private NATS and Postgres, the simulator with that latency and every stage as one process, with
`bus.target_in_flight` (and each model's `max_concurrency`) set to `--target`, pushes `--pairs`
value pairs through, and meanwhile samples the simulator's count of open model requests, which
is every LLM call in flight across the fleet. When a call takes seconds, the rate is in-flight /
latency: the figures show whether concurrency or the CPU bounds it. It records per latency:
- peak in flight (the simulator's own peak, and the highest sample) and the samples' median;
- LLM calls per second from the first to the last paid call;
- redeliveries: deliveries of every consumer beyond one per message it holds (a nak, an AckWait
  expiry or a deferral each add one), which must be 0;
- the pipeline benchmark's checks (duplicates, missing or unclassified answers, dead letters)
  and paid calls against the answers the simulator served.
It prints a table and appends one JSON line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import text

from bench.database import private_servers
from bench.pipeline import CHECKS, PROBLEMS, bench_config
from bench.recording import header, measure_and_record, print_table
from specstress.api import initialise, start_run
from specstress.config import load_config
from specstress.db.engine import create_engine
from specstress.local.stack import SIM_URL_ENV, Stack, wait_until_idle
from specstress.pipeline.bus import connect, consumers

SAMPLE_SECONDS = 0.25
PAID_SPAN = """
SELECT count(*) AS calls, extract(epoch FROM max(created_at) - min(created_at)) AS span
FROM llm_calls WHERE status = 'ok'
"""


def _config(folder: Path, targets: int, target_in_flight: int) -> Path:
    """The pipeline benchmark's config with the in-flight target and models that allow it."""
    path = bench_config(folder, targets)
    config = yaml.safe_load(path.read_text())
    config["bus"] = {**config.get("bus", {}), "target_in_flight": target_in_flight}
    for model in config["models"]:
        model["max_concurrency"] = target_in_flight
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _sample(sim: httpx.AsyncClient, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        reply = await sim.get("/sim/stats")
        samples.append(reply.json()["in_flight"])
        await asyncio.sleep(SAMPLE_SECONDS)


async def _redeliveries(url: str, stream: str) -> int:
    """Deliveries beyond the first of each message, summed over every consumer."""
    client = await connect(url, "bench-inflight")
    try:
        js = client.jetstream()
        subjects = (await js.stream_info(stream, subjects_filter=">")).state.subjects or {}
        extra = 0
        for consumer in consumers():
            info = await js.consumer_info(stream, consumer.durable)
            delivered = info.delivered.consumer_seq if info.delivered else 0
            extra += (delivered or 0) - subjects.get(consumer.event.subject, 0)
        return extra
    finally:
        await client.close()


async def _row(url: str, sql: str) -> dict[str, Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return dict((await conn.execute(text(sql))).one()._mapping)
    finally:
        await engine.dispose()


async def measure(args: argparse.Namespace, latency_seconds: float) -> dict[str, Any]:
    """One run of the pipeline with the simulator answering after `latency_seconds`."""
    async with private_servers("inflight") as servers:
        stack: Stack | None = None
        try:
            config_path = _config(servers.folder, args.targets, args.target)
            stack = Stack(config_path=config_path, log_dir=servers.folder / "logs", env=servers.env)
            sim_url = stack.start_simulator(latency_ms=latency_seconds * 1000)
            os.environ[SIM_URL_ENV] = stack.env[SIM_URL_ENV]
            config = load_config(config_path)
            await initialise(config)
            stack.start_services()
            samples: list[int] = []
            stop = asyncio.Event()
            async with httpx.AsyncClient(base_url=sim_url, timeout=30.0) as sim:
                sampler = asyncio.create_task(_sample(sim, samples, stop))
                started = time.time()
                await start_run(config, args.pairs, args.seed)
                await wait_until_idle(config, timeout=args.timeout, quiet_seconds=2.0, stack=stack)
                elapsed = time.time() - started
                stop.set()
                await sampler
                stats = (await sim.get("/sim/stats")).json()
            paid = await _row(servers.database_url, PAID_SPAN)
            checks = await _row(servers.database_url, CHECKS)
            redeliveries = await _redeliveries(servers.nats.url, config.bus.stream)
        finally:
            if stack is not None:
                stack.stop()
    checks["simulator_answers"] = stats["totals"].get("ok", 0)
    checks["duplicate_paid_calls"] = checks["simulator_answers"] - checks["paid_calls"]
    span = float(paid["span"] or 0.0)
    return {
        "latency_seconds": latency_seconds,
        "wall_seconds": round(elapsed, 1),
        "peak_in_flight": stats["peak_in_flight"],
        "peak_in_flight_sampled": max(samples, default=0),
        "median_in_flight_sampled": statistics.median(samples) if samples else 0,
        "llm_calls": paid["calls"],
        "llm_calls_per_second": round(paid["calls"] / span, 1) if span else None,
        "redeliveries": redeliveries,
        "checks": checks,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    runs = [asyncio.run(measure(args, latency)) for latency in args.latencies]
    return {
        **header("inflight"),
        "parameters": {
            "pairs": args.pairs,
            "targets": args.targets,
            "target_in_flight": args.target,
            "seed": args.seed,
        },
        "runs": runs,
        # other work on the machine moves every figure: the 1-minute load before and after
        "load_average": [round(load_at_start[0], 2), round(os.getloadavg()[0], 2)],
    }


def report(result: dict[str, Any]) -> None:
    counted = (
        "latency_seconds",
        "peak_in_flight",
        "median_in_flight_sampled",
        "llm_calls",
        "llm_calls_per_second",
        "redeliveries",
    )
    print_table(
        f"in-flight benchmark @ {result['commit']} "
        f"(target_in_flight {result['parameters']['target_in_flight']})",
        [
            "latency s",
            "peak in flight",
            "median sampled",
            "LLM calls",
            "calls/s",
            "redeliveries",
            "problems",
            "wall s",
        ],
        (
            [
                *(r[key] for key in counted),
                sum(r["checks"][key] for key in PROBLEMS),
                r["wall_seconds"],
            ]
            for r in result["runs"]
        ),
        width=120,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="value pairs to push per run")
    parser.add_argument("--targets", type=int, default=6, help="target models")
    parser.add_argument("--target", type=int, default=3000, help="bus.target_in_flight")
    parser.add_argument(
        "--latencies", type=float, nargs="+", default=[1.0, 5.0], help="seconds per call"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0)
    result = measure_and_record(parser, run, report)
    failed = any(r["redeliveries"] or any(r["checks"][k] for k in PROBLEMS) for r in result["runs"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
