"""The simulator spoken to over HTTP, as the stages speak to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.simulator import served_simulator


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with served_simulator() as url, httpx.AsyncClient(base_url=url) as http:
        yield http
