"""State the simulator's protocol handlers share, kept apart from server.py so every protocol
module can reach it without importing the server."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.llm_sim.prefix_cache import PrefixCache

LATENCY_KEY = web.AppKey("latency_ms", float)
PREFIX_CACHE_KEY = web.AppKey("prefix_cache", PrefixCache)


async def simulate_latency(request: web.Request) -> None:
    """Wait the configured delay before a completion, as every protocol's handler does."""
    latency_ms = request.app[LATENCY_KEY]
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000)
