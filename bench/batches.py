"""Batch mode throughput: how fast a gateway queues, sends, collects and serves batched calls.

Run with `python bench/batches.py` (`--help` for the parameters). A private Postgres holds the
queue and the ledger; the simulator (a process of its own) plays an OpenAI-compatible provider
whose batch jobs end one second after they are created. One gateway in responder batch mode:
1. queue: `--requests` distinct calls from `--concurrency` callers, each queued and answered
   with BatchPending (what a handler's message costs on its first delivery);
2. send: one step of the batch loop claims them and uploads them as jobs;
3. collect: once the jobs have ended, the step that downloads the results and writes every
   answer to the ledger;
4. serve: the same calls again, each now a ledger hit (what the returning message costs).
Figures are calls per second per phase and the process's peak resident memory. It prints a
table and appends one JSON line to bench/results.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from bench.database import private_database
from bench.recording import header, record
from specstress.config import BatchMode, ModelConfig, StageBatches
from specstress.db.engine import create_engine
from specstress.llm import ChatMessage, Gateway
from specstress.llm.errors import BatchPending
from specstress.local.stack import Stack

REPO = Path(__file__).resolve().parents[1]
STAGE = "responder"
PROCESSING_SECONDS = 1.0


def _model(sim_url: str) -> ModelConfig:
    return ModelConfig(
        key="bench-target",
        family="bench",
        base_url=f"{sim_url}/v1",
        model_id="aurora-balanced",
        simulated=True,
    )


def _question(n: int) -> list[ChatMessage]:
    return [
        ChatMessage(
            role="user",
            content=f"Case {n}: a colleague asks me to cover for a missed deadline. "
            "Should I tell our manager the truth, or protect my colleague?",
        )
    ]


async def _timed(calls: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> float:
    """Calls per second of `call(0..calls-1)` run by `concurrency` callers."""
    numbers = iter(range(calls))

    async def caller() -> None:
        for n in numbers:
            await call(n)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def _count(engine: Any, sql: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql)))


async def measure(database_url: str, sim_url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = create_engine(database_url, pool_size=args.concurrency)
    model = _model(sim_url)
    batches = StageBatches(
        responder=BatchMode(
            enabled=True,
            max_requests_per_batch=args.per_job,
            max_wait_seconds=0,
            poll_seconds=0.1,
        )
    )
    gateway = Gateway(engine, service=STAGE, batch=batches, models=[model])
    assert gateway.batches is not None
    try:

        async def queue(n: int) -> None:
            try:
                await gateway.generate(model, _question(n), stage=STAGE)
            except BatchPending:
                return
            raise AssertionError("a new call must wait for its batch")

        queued = await _timed(args.requests, args.concurrency, queue)

        started = time.perf_counter()
        await gateway.batches.step()
        send_seconds = time.perf_counter() - started
        jobs = await _count(engine, "SELECT count(*) FROM llm_batch_jobs")
        await asyncio.sleep(PROCESSING_SECONDS + 0.5)

        started = time.perf_counter()
        await gateway.batches.step()
        collect_seconds = time.perf_counter() - started
        answered = await _count(engine, "SELECT count(*) FROM llm_calls WHERE status = 'ok'")
        if answered != args.requests:
            raise RuntimeError(f"{answered} of {args.requests} answers collected in one step")

        async def serve(n: int) -> None:
            output = await gateway.generate(model, _question(n), stage=STAGE)
            assert output.from_cache

        served = await _timed(args.requests, args.concurrency, serve)
    finally:
        await gateway.aclose()
        await engine.dispose()
    return {
        "jobs": jobs,
        "queue_per_second": round(queued),
        "send_per_second": round(args.requests / send_seconds),
        "collect_per_second": round(args.requests / collect_seconds),
        "serve_per_second": round(served),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    async with private_database("batches", keep=True) as scratch:
        folder, database_url = scratch.folder, scratch.database_url
        stack = Stack(config_path=folder / "unused.yaml", log_dir=folder / "logs", env={})
        try:
            conditions = folder / "conditions.yaml"
            conditions.write_text(
                yaml.safe_dump({"batches": {"processing_seconds": PROCESSING_SECONDS}})
            )
            sim_url = stack.start_simulator(conditions=conditions)
            figures = await measure(database_url, sim_url, args)
        finally:
            stack.stop()
    return {
        # other work on the machine, before and after: the figures move with it
        **header(
            "batches", load_average_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)]
        ),
        "parameters": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "max_requests_per_batch": args.per_job,
        },
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="distinct calls")
    parser.add_argument("--concurrency", type=int, default=16, help="callers queuing and served")
    parser.add_argument("--per-job", type=int, default=5000, help="max_requests_per_batch")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    record(result)
    table = Table(title=f"batch mode, {args.requests} calls in {result['jobs']} job(s)")
    table.add_column("phase")
    table.add_column("calls/s", justify="right")
    for phase in ("queue", "send", "collect", "serve"):
        table.add_row(phase, f"{result[f'{phase}_per_second']:,}")
    table.add_row("peak memory", f"{result['peak_rss_mb']} MB")
    Console().print(table)


if __name__ == "__main__":
    main()
