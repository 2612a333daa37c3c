"""Command line of the specstress LLM simulator: ``python -m services.llm_sim``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web

from services.llm_sim.conditions import Conditions, ConditionsError, add_arguments, describe
from services.llm_sim.conditions import from_arguments as conditions_from_arguments
from services.llm_sim.personas import PERSONAS
from services.llm_sim.server import build_app

log = logging.getLogger("services.llm_sim")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.llm_sim",
        description="Run the specstress LLM simulator (offline, deterministic persona models).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700, help="0 picks a free port")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay added to every completion"
    )
    parser.add_argument(
        "--require-key",
        action="store_true",
        help="refuse provider requests that carry no API key (any key is accepted)",
    )
    add_arguments(parser)
    return parser.parse_args(argv)


async def _serve(
    host: str, port: int, latency_ms: float, require_key: bool, conditions: Conditions
) -> None:
    app = build_app(latency_ms, require_key=require_key, conditions=conditions)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        # A supervisor reads this first stdout line to learn the port when it asked for 0.
        print(f"llm_sim listening on http://{shown_host}:{bound_port}", flush=True)
        log.info(
            "LLM simulator serving %d persona models, latency %s ms", len(PERSONAS), latency_ms
        )
        if conditions.active:
            log.info("traffic conditions: %s", describe(conditions))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    log.info("LLM simulator stopped")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until SIGINT or SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        conditions = conditions_from_arguments(args)
    except ConditionsError as exc:
        raise SystemExit(f"error: {exc}") from None
    asyncio.run(_serve(args.host, args.port, args.latency_ms, args.require_key, conditions))


if __name__ == "__main__":
    main()
