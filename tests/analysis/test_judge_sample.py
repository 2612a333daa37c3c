"""`specstress judge-sample`: Table 2's random sample gets verdict requests on the bus, one per
judge under every spec that governs an answer's family."""

from __future__ import annotations

import hashlib

import nats

from specstress.analysis.reports import request_sample_verdicts
from specstress.config import Config, SpecConfig
from specstress.contracts import VerdictRequested
from specstress.db.engine import create_engine
from specstress.pipeline.bus import ensure_topology
from tests.support.analysis_facts import (
    BLUE,
    JUDGES,
    RED,
    analysis_config,
    insert_models,
    insert_responses,
    insert_scenarios,
    response_id,
)

SCENARIOS = [f"x{i}" for i in range(10)]


def _config(database_url: str, nats_url: str) -> Config:
    config = analysis_config(database_url)
    # a second spec governs both families: red answers are judged under both
    house = SpecConfig(id="house", version="2", path="builtin:example", families=["red", "blue"])
    return config.model_copy(update={"nats_url": nats_url, "specs": [*config.specs, house]})


async def test_the_random_sample_is_sent_to_every_judge_under_every_spec(
    database_url: str, nats_url: str
) -> None:
    config = _config(database_url, nats_url)
    engine = create_engine(database_url, pool_size=2)
    try:
        await insert_models(engine, {k: "red" for k in RED} | {k: "blue" for k in BLUE})
        await insert_scenarios(engine, SCENARIOS)
        await insert_responses(engine, [(s, m) for s in SCENARIOS for m in RED + BLUE])
    finally:
        await engine.dispose()
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        await ensure_topology(js, config.bus)

        assert await request_sample_verdicts(config, n=3) == (3, 3 * (5 * 2 + 7) * 3)
        # a second request of the same sample is deduplicated by the stream
        assert await request_sample_verdicts(config, n=3) == (3, 0)

        sample = sorted(SCENARIOS, key=lambda s: hashlib.md5(s.encode()).hexdigest())[:3]
        expected = {
            (response_id(s, m), judge, spec)
            for s in sample
            for m, specs in [(m, ("rules", "house")) for m in RED] + [(m, ("house",)) for m in BLUE]
            for spec in specs
            for judge in JUDGES
        }
        reader = await js.pull_subscribe(VerdictRequested.subject, durable="sample-reader")
        messages = await reader.fetch(len(expected), timeout=5)
        got = {
            (e.response_id, e.judge, e.spec_id)
            for e in (VerdictRequested.model_validate_json(m.data) for m in messages)
        }
        assert got == expected
    finally:
        await client.close()
