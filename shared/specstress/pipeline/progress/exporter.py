"""Prometheus gauges of the completeness model: pending units and the oldest one's age per stage.

The services count what they handle; what is still owed is a question for the database, asked
here every `--interval` seconds with a read-only role (the dashboards' one is enough):

    python -m specstress.pipeline.progress.exporter --config specstress.yaml --port 7778

Each stage carries the `service` that does its work, so a rule can tell pending work whose
consumers are idle (nothing on the bus will bring it: an event was lost; `specstress reconcile`)
from work that is merely queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine

from specstress import metrics
from specstress.config import Config
from specstress.db import create_engine
from specstress.pipeline import eventloop, process
from specstress.pipeline.progress.completeness import STAGE_SERVICES, completeness

__all__ = ["export_once", "main"]

log = logging.getLogger("specstress.pipeline.progress.exporter")


async def export_once(engine: AsyncEngine, config: Config) -> None:
    done = await completeness(engine, config)
    for stage in done.stages:
        service = STAGE_SERVICES[stage.stage]
        metrics.pending_units.labels(stage.stage, service).set(stage.pending)
        metrics.dead_lettered_units.labels(stage.stage, service).set(stage.dead_lettered)
        metrics.oldest_pending_seconds.labels(stage.stage, service).set(
            stage.oldest_pending_seconds or 0.0
        )
    metrics.run_settled.set(1 if done.settled else 0)
    metrics.run_complete.set(1 if done.complete else 0)


async def _serve(config: Config, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    engine = create_engine(config.database_url, pool_size=1)
    try:
        while not stop.is_set():
            try:
                await export_once(engine, config)
            except Exception:
                # the database may be restarting: keep the last figures and try again
                log.exception("completeness could not be read")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    arguments = process.parser("python -m specstress.pipeline.progress.exporter")
    arguments.add_argument("--host", default="127.0.0.1", help="address to serve /metrics on")
    arguments.add_argument("--port", type=int, default=7778)
    arguments.add_argument("--interval", type=float, default=15.0, help="seconds between reads")
    args = arguments.parse_args(argv)
    config = process.configure(args.config)
    server, thread = start_http_server(args.port, addr=args.host)
    log.info("exporting completeness on http://%s:%d/metrics", args.host, args.port)
    try:
        eventloop.run(_serve(config, args.interval))
    finally:
        server.shutdown()
        thread.join()


if __name__ == "__main__":
    main()
