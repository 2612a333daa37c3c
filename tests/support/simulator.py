"""The LLM simulator served inside the test process, on a free local port."""

from __future__ import annotations

import asyncio
import sys
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


@asynccontextmanager
async def simulator_process(*options: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`python -m services.llm_sim --port 0 *options` as a process of its own: yields the first line
    it prints (where it listens) and the process, and stops the process if it still runs."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.llm_sim",
        "--port",
        "0",
        *options,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        yield line, process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
