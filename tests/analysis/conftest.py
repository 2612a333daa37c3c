"""The simulator's OpenAI-compatible embeddings, for the selection and value-mapping tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.simulator import served_simulator


@pytest.fixture
async def simulator_url() -> AsyncIterator[str]:
    async with served_simulator() as url:
        yield f"{url}/v1"
