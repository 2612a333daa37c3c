"""The new-model watch as processes on the simulator: a release is registered by rule within a
poll, backfilled, scored and judged, and its stored release report equals one recomputed here
from the facts; a release over its budget stays proposed; a retired model gets no new calls;
two watcher replicas register a model once."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from specstress.api import start_run
from specstress.config import Config
from specstress.contracts import ModelRegistered
from specstress.local.stack import wait_until_idle
from specstress.method.labels import REFUSALS
from specstress.pipeline.bus import connect
from tests.paths import DEMO_CONFIG
from tests.support.pipeline_harness import rows, running_stack

pytestmark = pytest.mark.e2e
PAIRS = 4
SEED = 21
NEW = "aurora-nova"
PRICEY = "pricey-one"
RETIRED = "borealis-literal"
BUDGET = 0.01


def _watch_config(folder: Path) -> Path:
    """The demo config (aurora releases registered, under the spec) with a short poll and a
    budget rule that a priced release overruns."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["watch"]["poll_seconds"] = 1
    raw["watch"]["check_seconds"] = 0.5
    raw["watch"]["jitter"] = 0.0
    raw["watch"]["providers"][0]["rules"].insert(
        0,
        {
            "name": "priced",
            "include": ["re:^pricey-"],
            "family": "aurora",
            "action": "register",
            "backfill_budget_usd": BUDGET,
            "template": {"prices": {"input_per_mtok": 500.0, "output_per_mtok": 500.0}},
        },
    )
    path = folder / "specstress.watch.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def _until(database_url: str, sql: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = await rows(database_url, sql)
        if found:
            return found
        assert time.monotonic() < deadline, f"never true: {sql}"
        await asyncio.sleep(0.5)


def _d(matrix: list[tuple[int, int]]) -> float:
    return float(np.std(np.array(matrix, dtype=float), axis=0, ddof=0).max())


async def _expected_comparison(config: Config, database_url: str, against: str) -> dict[str, Any]:
    """The release report recomputed here from the stored facts, with numpy."""
    positions = await rows(
        database_url,
        "SELECT r.scenario_id, r.model_key, r.response_id, m.family, c.value1_position AS v1, "
        "c.value2_position AS v2 FROM responses r JOIN classifications c USING (response_id) "
        "JOIN models m USING (model_key)",
    )
    by_scenario: dict[str, dict[str, tuple[int, int]]] = {}
    family_of: dict[str, str] = {}
    response_of: dict[tuple[str, str], str] = {}
    for p in positions:
        by_scenario.setdefault(p["scenario_id"], {})[p["model_key"]] = (p["v1"], p["v2"])
        family_of[p["model_key"]] = p["family"]
        response_of[(p["scenario_id"], p["model_key"])] = p["response_id"]
    scenarios = sorted(s for s, m in by_scenario.items() if NEW in m)
    threshold = config.disagreement.threshold
    changes = []
    for name in config.model_sets:
        d_with, d_without, newly, outliers, belongs = [], [], [], 0, False
        for s in scenarios:
            available = [(k, family_of[k]) for k in sorted(by_scenario[s])]
            members = config.model_set_members(name, available)
            if NEW not in members:
                continue
            belongs = True
            others = [k for k in members if k != NEW]
            mine = np.array(by_scenario[s][NEW])
            if len(members) >= 3:
                gaps = np.abs(np.array([by_scenario[s][k] for k in others]) - mine)
                need = math.ceil(config.outliers.share * len(others))
                if ((gaps >= config.outliers.min_gap).sum(axis=0) >= need).any():
                    outliers += 1
            if len(members) < 2:
                continue
            with_new = _d([by_scenario[s][k] for k in members])
            without = _d([by_scenario[s][k] for k in others]) if len(others) >= 2 else None
            if with_new >= threshold and (without is None or without < threshold):
                newly.append(s)
            if without is not None:
                d_with.append(with_new)
                d_without.append(without)
        if belongs:
            changes.append(
                {
                    "model_set": name,
                    "scenarios": len(d_with),
                    "mean_d_with": float(np.mean(d_with)),
                    "mean_d_without": float(np.mean(d_without)),
                    "delta": float(np.mean(d_with) - np.mean(d_without)),
                    "newly_high": sorted(newly),
                    "outliers": outliers,
                }
            )
    labels = {
        r["response_id"]: r["refusal_type"]
        for r in await rows(database_url, "SELECT response_id, refusal_type FROM refusal_types")
    }
    decisions: dict[str, list[str]] = {}
    for v in await rows(database_url, "SELECT response_id, decision FROM verdicts"):
        decisions.setdefault(v["response_id"], []).append(v["decision"])

    own = [response_of[(s, NEW)] for s in scenarios]
    kin = [
        response_of[(s, k)]
        for s in scenarios
        for k in by_scenario[s]
        if k != NEW and family_of[k] == "aurora"
    ]
    before = [response_of[(s, against)] for s in scenarios if against in by_scenario[s]]

    def refusals(ids: list[str]) -> dict[str, Any]:
        types = [labels[i] for i in ids if i in labels]
        count = sum(t in REFUSALS for t in types)
        return {
            "labelled": len(types),
            "refusals": count,
            "rate": count / len(types) if types else None,
            "types": dict(sorted(Counter(types).items())),
        }

    def flags(ids: list[str]) -> dict[str, Any]:
        judged = [decisions[i] for i in ids if i in decisions]
        majority = sum(sum(d != "compliant" for d in ds) * 2 > len(ds) for ds in judged)
        anyone = sum(any(d != "compliant" for d in ds) for ds in judged)
        n = len(judged)
        return {
            "judged": n,
            "majority": majority,
            "any": anyone,
            "majority_rate": majority / n if n else None,
            "any_rate": anyone / n if n else None,
        }

    family_flags, with_model = flags(kin), flags(kin + own)
    moved: list[dict[str, Any]] = sorted(
        (
            {
                "scenario_id": s,
                "model": list(by_scenario[s][NEW]),
                "predecessor": list(by_scenario[s][against]),
                "distance": int(
                    np.abs(np.array(by_scenario[s][NEW]) - np.array(by_scenario[s][against])).sum()
                ),
            }
            for s in scenarios
            if against in by_scenario[s]
        ),
        key=_furthest_first,
    )[:20]
    return {
        "model_key": NEW,
        "family": "aurora",
        "against": against,
        "scenarios": len(scenarios),
        "disagreement": changes,
        "refusals_model": refusals(own),
        "refusals_predecessor": refusals(before),
        "refusals_family": refusals(kin),
        "compliance": [
            {
                "spec_id": "example",
                "spec_version": "1",
                "model": flags(own),
                "predecessor": flags(before),
                "family": family_flags,
                "family_with_model": with_model,
            }
        ],
        "flag_rate_shift": with_model["majority_rate"] - family_flags["majority_rate"],
        "moved_furthest": moved,
    }


def _furthest_first(moved: dict[str, Any]) -> tuple[int, str]:
    return -int(moved["distance"]), str(moved["scenario_id"])


def _assert_close(stored: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, float):
        assert stored == pytest.approx(expected, abs=2e-6), where
    elif isinstance(expected, dict):
        assert set(stored) == set(expected), where
        for key in expected:
            _assert_close(stored[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(stored) == len(expected), where
        for i, (a, b) in enumerate(zip(stored, expected, strict=True)):
            _assert_close(a, b, f"{where}[{i}]")
    else:
        assert stored == expected, where


async def _registrations(config: Config, key: str) -> int:
    client = await connect(config.nats_url, "watch-test")
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe(ModelRegistered.subject, stream=config.bus.stream)
        found = 0
        try:
            while True:
                for msg in await sub.fetch(100, timeout=1):
                    found += ModelRegistered.model_validate_json(msg.data).model_key == key
                    await msg.ack()
        except TimeoutError:
            pass
        await sub.unsubscribe()
        return found
    finally:
        await client.close()


def _polls(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("specstress_watch_polls_total{")
    )


async def test_release_is_registered_backfilled_and_reported(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = _watch_config(tmp_path)
    async with running_stack(
        tmp_path, nats_url, database_url, monkeypatch, config_path=config_path
    ) as running:
        config = running.config
        replica = running.stack.start_service("watcher", replica=1)
        await start_run(config, PAIRS, SEED)
        await wait_until_idle(config, timeout=120, stack=running.stack)
        scenarios = await rows(database_url, "SELECT scenario_id FROM scenarios")

        async with httpx.AsyncClient(base_url=running.sim_url) as sim:
            for change in ({"release": NEW}, {"release": PRICEY}, {"retire": RETIRED}):
                (await sim.post("/sim/models", json=change)).raise_for_status()
            released = time.monotonic()
            registered = await _until(
                database_url,
                f"SELECT * FROM discovered_models WHERE model_id = '{NEW}' "
                "AND status = 'registered'",
                timeout=10,
            )
            # within one poll (1 s) and a check round, not a scheduled hour later
            assert time.monotonic() - released < 5
            assert registered[0]["rule"] == "aurora-releases"
            retired = await _until(
                database_url,
                f"SELECT * FROM models WHERE model_key = '{RETIRED}' AND NOT active",
                timeout=10,
            )
            assert retired[0]["retired_at"] is not None
            calls_when_retired = (await sim.get("/sim/stats")).json()["models"][RETIRED]["requests"]

            stored = await _until(
                database_url,
                f"SELECT * FROM model_comparisons WHERE model_key = '{NEW}'",
                timeout=60,
            )
            await wait_until_idle(config, timeout=60, stack=running.stack)

            # every scenario: the release's answer and classification, and its verdicts where
            # a model set it belongs to disagrees highly
            sets = [n for n in config.model_sets if config.model_set_members(n, [(NEW, "aurora")])]
            in_sets = ", ".join(f"'{n}'" for n in sets)
            facts = await rows(
                database_url,
                "SELECT r.scenario_id, c.response_id AS classified, "
                "(SELECT count(*) FROM verdicts v WHERE v.response_id = r.response_id) AS verdicts, "
                "(SELECT coalesce(bool_or(high), false) FROM disagreement d "
                f" WHERE d.scenario_id = r.scenario_id AND d.model_set IN ({in_sets})) AS flagged "
                "FROM responses r LEFT JOIN classifications c USING (response_id) "
                f"WHERE r.model_key = '{NEW}'",
            )
            assert {f["scenario_id"] for f in facts} == {s["scenario_id"] for s in scenarios}
            assert all(f["classified"] is not None for f in facts)
            for f in facts:
                assert f["verdicts"] == (len(config.roles.judges) if f["flagged"] else 0), f
            assert any(f["flagged"] for f in facts), "the run should flag something"

            # the stored report equals the one recomputed from the facts
            body = stored[0]["body"]
            against = body["against"]
            assert against in {"aurora-cautious", "aurora-balanced", "aurora-deferential"}
            expected = await _expected_comparison(config, database_url, against)
            _assert_close(body, expected)
            assert stored[0]["flag_rate_shift"] == pytest.approx(
                expected["flag_rate_shift"], abs=2e-6
            )

            # over its budget: proposed, with the estimate shown
            pricey = await rows(
                database_url, f"SELECT * FROM discovered_models WHERE model_id = '{PRICEY}'"
            )
            assert pricey[0]["status"] == "proposed"
            assert pricey[0]["estimate_usd"] > BUDGET
            assert "over budget" in pricey[0]["note"]
            assert (
                await rows(database_url, "SELECT 1 FROM models WHERE model_key = 'pricey-one'")
            ) == []

            # a new run: the retired model gets no new calls, the others answer
            await start_run(config, 1, SEED + 1)
            await wait_until_idle(config, timeout=60, stack=running.stack)
            stats = (await sim.get("/sim/stats")).json()["models"]
            assert stats[RETIRED]["requests"] == calls_when_retired
            latest = await rows(
                database_url,
                "SELECT r.model_key, count(*) AS n FROM responses r JOIN scenarios s "
                "USING (scenario_id) JOIN value_pairs p USING (pair_id) "
                f"WHERE p.seed = {SEED + 1} GROUP BY 1",
            )
            answered = {r["model_key"] for r in latest}
            assert RETIRED not in answered and NEW in answered

        # two replicas: one of them polled, the model was registered once
        polls = []
        async with httpx.AsyncClient() as client:
            for name in ("watcher", replica.name):
                port = running.stack.processes[name].metrics_port
                polls.append(_polls((await client.get(f"http://127.0.0.1:{port}/metrics")).text))
        assert sorted(p > 0 for p in polls) == [False, True], polls
        assert await _registrations(config, NEW) == 1
