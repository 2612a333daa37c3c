"""The classifier's Stage on real Postgres and NATS (its stream and consumers declared), with
the simulator over HTTP; the demo config with refusal types on flagged scenarios only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from aiohttp.test_utils import TestServer

from services.llm_sim import build_app
from specstress.config import ModelConfig, load_config
from specstress.db.engine import create_engine
from specstress.llm.gateway import Gateway
from specstress.llm.messages import ChatMessage, ModelOutput
from specstress.local.stack import SIM_URL_ENV
from specstress.pipeline.bus import ensure_topology
from specstress.pipeline.prompts import PromptLibrary
from specstress.pipeline.stage import Stage
from tests.paths import DEMO_CONFIG


@pytest.fixture
async def stage(
    tmp_path: Path, database_url: str, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stage]:
    server = TestServer(build_app())
    await server.start_server()
    monkeypatch.setenv(SIM_URL_ENV, str(server.make_url("/v1")))
    monkeypatch.setenv("DATABASE_URL", database_url)
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["labels"] = {"refusal_types": "flagged"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    engine = create_engine(database_url)
    gateway = Gateway(engine, service="classifier")
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await ensure_topology(js, config.bus)
        yield Stage(
            name="classifier",
            config=config,
            engine=engine,
            gateway=gateway,
            prompts=PromptLibrary("classifier"),
            js=js,
        )
    finally:
        await client.close()
        await gateway.aclose()
        await engine.dispose()
        await server.close()


@pytest.fixture
def asked(stage: Stage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model keys of every request the stage hands its gateway, paid or answered from the
    ledger: what a racing duplicate costs even when it costs no money."""
    requests: list[str] = []
    generate = stage.gateway.generate

    async def counted(
        model: ModelConfig, messages: Sequence[ChatMessage], **options: Any
    ) -> ModelOutput:
        requests.append(model.key)
        return await generate(model, messages, **options)

    monkeypatch.setattr(stage.gateway, "generate", counted)
    return requests
