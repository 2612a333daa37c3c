"""Rate-limit utilisation: how much of a provider's limit a fleet of gateways uses, and 429s.

Run with `make bench-ratelimit` (or `python bench/ratelimit.py --help`). A private Postgres holds
the shared limit; the simulator plays a provider with a per-minute request limit (a token
bucket holding only `--burst-seconds` of it, so any overshoot is refused at once) and a fixed
latency; `--processes` worker processes each run `--concurrency` responder-like callers through
their own Gateway, with the same limit configured. After a warm-up the figures are:
- utilisation: answers served per minute in the window / the limit (target >= 95%);
- 429s the simulator's limit gave in the window (target 0), and in the whole run;
- the same rate counted from the ledger's paid rows, as a cross-check;
- what one shared limit row sustains: reservations per second with many concurrent callers
  and no waiting (the per-call cost of fleet-wide pacing).
It prints a table and appends one JSON line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from bench.database import private_database
from bench.recording import conclude, header
from specstress.config import ModelConfig, RateLimits
from specstress.db.engine import create_engine
from specstress.llm import ChatMessage, Gateway
from specstress.llm.traffic import store as limits
from specstress.local.stack import Stack

REPO = Path(__file__).resolve().parents[1]
PERSONA = "aurora-balanced"
PAID_IN_WINDOW = """
SELECT count(*) FROM llm_calls
WHERE status = 'ok' AND created_at >= to_timestamp(:start) AND created_at < to_timestamp(:end)
"""


def _model(sim_url: str, rpm: int) -> ModelConfig:
    return ModelConfig(
        key="bench-target",
        family="bench",
        base_url=f"{sim_url}/v1",
        model_id=PERSONA,
        max_concurrency=64,
        limits=RateLimits(requests_per_minute=rpm),
        simulated=True,
    )


async def _worker(args: argparse.Namespace) -> None:
    """One process of the fleet: `concurrency` callers asking distinct questions until the end."""
    engine = create_engine(args.database_url, pool_size=8)
    gateway = Gateway(engine, service=f"bench-{args.worker_id}")
    model = _model(args.sim_url, args.rpm)
    deadline = time.monotonic() + args.seconds
    asked = 0

    async def caller(lane: int) -> None:
        nonlocal asked
        while time.monotonic() < deadline:
            asked += 1
            question = (
                f"Scenario {args.worker_id}-{lane}-{asked}: a colleague asks me to cover for a "
                "missed deadline. Should I tell our manager the truth?"
            )
            await gateway.generate(
                model, [ChatMessage(role="user", content=question)], stage="bench"
            )

    try:
        await asyncio.gather(*(caller(lane) for lane in range(args.concurrency)))
    finally:
        await gateway.aclose()
        await engine.dispose()


async def _sim_counts(sim_url: str) -> tuple[float, int, int]:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{sim_url}/sim/stats")
    reply.raise_for_status()
    served = reply.json()["models"].get(PERSONA, {})
    return time.time(), int(served.get("ok", 0)), int(served.get("limit_exceeded", 0))


async def _row_throughput(database_url: str, clients: int, seconds: float) -> dict[str, Any]:
    """Reservations per second on one hot limit row, with no waiting (an unreachable limit)."""
    base = create_engine(database_url, pool_size=1)
    engine = limits.pacing_engine(base)
    key = f"{clients:064d}"
    await limits.ensure_limit(engine, key, "http://bench/v1", "hot-row", None)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await limits.reserve(
                engine,
                key,
                requests_per_minute=10**9,
                tokens_per_minute=None,
                tokens=1000,
                burst_seconds=1.0,
                max_wait_seconds=30.0,
            )
            latencies.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await engine.dispose()
        await base.dispose()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "clients": clients,
        "per_second": round(len(latencies) / seconds),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with private_database("ratelimit", keep=True) as scratch:
        folder, database_url = scratch.folder, scratch.database_url
        stack = Stack(config_path=folder / "unused.yaml", log_dir=folder / "logs", env={})
        workers: list[asyncio.subprocess.Process] = []
        try:
            conditions = folder / "conditions.yaml"
            conditions.write_text(
                yaml.safe_dump(
                    {
                        "latency": {"fixed_ms": args.latency_ms},
                        "limits": {
                            "requests_per_minute": args.rpm,
                            "burst_seconds": args.burst_seconds,
                        },
                    }
                )
            )
            sim_url = stack.start_simulator(conditions=conditions)
            seconds = args.warmup + args.window
            for worker_id in range(args.processes):
                command = [
                    sys.executable,
                    "-m",
                    "bench.ratelimit",
                    "worker",
                    "--worker-id",
                    str(worker_id),
                ]
                command += ["--database-url", database_url, "--sim-url", sim_url]
                command += ["--rpm", str(args.rpm), "--concurrency", str(args.concurrency)]
                command += ["--seconds", str(seconds + 5)]
                with (folder / "logs" / f"worker-{worker_id}.log").open("wb") as log:
                    workers.append(
                        await asyncio.create_subprocess_exec(
                            *command, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=REPO
                        )
                    )
            await asyncio.sleep(args.warmup)
            start, ok_start, refused_start = await _sim_counts(sim_url)
            await asyncio.sleep(args.window)
            end, ok_end, refused_end = await _sim_counts(sim_url)
            for worker in workers:
                await asyncio.wait_for(worker.wait(), timeout=60 + args.latency_ms / 1000)
            engine = create_engine(database_url, pool_size=1)
            try:
                async with engine.connect() as conn:
                    paid = int(
                        await conn.scalar(text(PAID_IN_WINDOW), {"start": start, "end": end})
                    )
            finally:
                await engine.dispose()
            rows = [
                await _row_throughput(database_url, clients, args.row_seconds)
                for clients in args.row_clients
            ]
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()
            stack.stop()
    minutes = (end - start) / 60
    achieved = (ok_end - ok_start) / minutes
    return {
        **header("ratelimit"),
        "parameters": {
            "requests_per_minute": args.rpm,
            "burst_seconds": args.burst_seconds,
            "latency_ms": args.latency_ms,
            "processes": args.processes,
            "concurrency_per_process": args.concurrency,
            "warmup_seconds": args.warmup,
            "window_seconds": args.window,
        },
        "achieved_rpm": round(achieved, 1),
        "utilisation": round(achieved / args.rpm, 4),
        "ledger_rpm": round(paid / minutes, 1),
        "http_429_after_warmup": refused_end - refused_start,
        "http_429_total": refused_end,
        "limit_row": rows,
    }


def report(result: dict[str, Any]) -> None:
    console = Console(width=120)
    p = result["parameters"]
    title = (
        f"rate-limit benchmark @ {result['commit']}: {p['requests_per_minute']} RPM, "
        f"{p['latency_ms']:.0f} ms latency, {p['processes']} processes"
    )
    table = Table("figure", "value", title=title)
    table.add_row("utilisation (served / limit)", f"{result['utilisation']:.1%}")
    table.add_row("served per minute (simulator)", str(result["achieved_rpm"]))
    table.add_row("paid per minute (ledger)", str(result["ledger_rpm"]))
    table.add_row("429s after warm-up", str(result["http_429_after_warmup"]))
    table.add_row("429s in the whole run", str(result["http_429_total"]))
    for row in result["limit_row"]:
        table.add_row(
            f"one limit row, {row['clients']} concurrent callers",
            f"{row['per_second']} reservations/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("worker", help="one process of the fleet (started by the bench)")
    worker.add_argument("--worker-id", type=int, required=True)
    worker.add_argument("--database-url", required=True)
    worker.add_argument("--sim-url", required=True)
    worker.add_argument("--rpm", type=int, required=True)
    worker.add_argument("--concurrency", type=int, required=True)
    worker.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rpm", type=int, default=300, help="the provider's requests/minute")
    parser.add_argument("--burst-seconds", type=float, default=2.0, help="its bucket, in seconds")
    parser.add_argument("--latency-ms", type=float, default=2000.0, help="its answer time")
    parser.add_argument("--processes", type=int, default=2, help="gateway processes")
    parser.add_argument("--concurrency", type=int, default=16, help="callers per process")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured")
    parser.add_argument(
        "--row-clients", type=int, nargs="+", default=[1, 8, 32], help="callers on one row"
    )
    parser.add_argument("--row-seconds", type=float, default=5.0, help="per caller count")
    parser.add_argument("--no-record", action="store_true", help="do not append to results.jsonl")
    args = parser.parse_args()
    if args.command == "worker":
        asyncio.run(_worker(args))
        return
    result = asyncio.run(run(args))
    conclude(args, result, report)


if __name__ == "__main__":
    main()
