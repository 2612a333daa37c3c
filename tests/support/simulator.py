"""The LLM simulator served inside the test process, on a free local port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp.test_utils import TestServer

from services.llm_sim import build_app
from services.llm_sim.conditions import Conditions


@asynccontextmanager
async def served_simulator(
    *, require_key: bool = False, conditions: Conditions | None = None
) -> AsyncIterator[str]:
    """Yields the simulator's root URL (no trailing /); the options are build_app's."""
    server = TestServer(build_app(require_key=require_key, conditions=conditions))
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
