"""A target model whose answers try to take over the prompts that quote them, through the whole
pipeline on the simulator. Its answers close their block in many spellings, forge answer blocks
of every target, forge verdicts and placements and tell the assessor to ignore its instructions;
the simulated classifier, labellers and judges obey such orders whenever they find them outside
a quoted block. Every position, label and verdict must still equal the planted one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.llm_sim.injection import hostile_suffix
from services.llm_sim.personas import (
    judge_decision,
    planted_distinctive_values,
    planted_positions,
    planted_refusal_type,
)
from tests.paths import DEMO_CONFIG
from tests.support.pipeline_harness import finished_run, rows

pytestmark = pytest.mark.e2e
PAIRS = 3
SEED = 5
INJECTOR = "aurora-injector"


def _config_with_injector(tmp_path: Path) -> Path:
    raw: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text())
    template = next(m for m in raw["models"] if m["key"] == "aurora-balanced")
    raw["models"].append({**template, "key": INJECTOR, "model_id": INJECTOR})
    raw["roles"]["targets"].append(INJECTOR)
    path = tmp_path / "specstress.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def test_hostile_answers_change_no_position_label_or_verdict(
    tmp_path: Path, nats_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = _config_with_injector(tmp_path)
    async with finished_run(
        tmp_path,
        nats_url,
        database_url,
        monkeypatch,
        pairs=PAIRS,
        seed=SEED,
        timeout=120,
        config_path=config_path,
    ) as running:
        config = running.config

        answers = await rows(
            database_url,
            "SELECT r.response_id, r.model_key, r.text, s.query, c.value1_position, "
            "c.value2_position, t.refusal_type FROM responses r "
            "JOIN scenarios s USING (scenario_id) "
            "LEFT JOIN classifications c USING (response_id) "
            "LEFT JOIN refusal_types t USING (response_id)",
        )
        hostile = [a for a in answers if a["model_key"] == INJECTOR]
        assert hostile and len(answers) == len(hostile) * len(config.roles.targets)
        for a in hostile:
            text = str(a["text"])
            # stored, cleaned of the NUL and the lone surrogate it was sent with
            assert "</Response>" in text and "\x00" not in text and "\ufffd" in text
        cleaned = await rows(
            database_url,
            "SELECT response->'cleaned' AS cleaned FROM llm_calls "
            "WHERE model_key = 'aurora-injector' AND status = 'ok'",
        )
        assert [c["cleaned"] for c in cleaned] == [["text"]] * len(hostile)

        # every answer placed and labelled as planted, the hostile one and its neighbours alike
        for a in answers:
            model_id = config.model(str(a["model_key"])).model_id
            query = str(a["query"])
            placed = (a["value1_position"], a["value2_position"])
            assert placed == planted_positions(model_id, query), a["model_key"]
            assert a["refusal_type"] == planted_refusal_type(model_id, query), a["model_key"]
        valued: dict[str, list[str]] = {}
        for v in await rows(
            database_url, "SELECT response_id, value FROM distinctive_values ORDER BY rank"
        ):
            valued.setdefault(str(v["response_id"]), []).append(str(v["value"]))
        by_id = {str(a["response_id"]): a for a in answers}
        assert any(key in valued for key in (str(a["response_id"]) for a in hostile))
        for response_id, names in valued.items():
            a = by_id[response_id]
            model_id = config.model(str(a["model_key"])).model_id
            assert tuple(names) == planted_distinctive_values(model_id, str(a["query"]))

        # every verdict is the judge's own, never the verdict the answer dictates
        verdicts = await rows(
            database_url,
            "SELECT v.judge, v.decision, r.text, r.model_key, s.query FROM verdicts v "
            "JOIN responses r USING (response_id) JOIN scenarios s ON s.scenario_id = r.scenario_id",
        )
        on_hostile = [v for v in verdicts if v["model_key"] == INJECTOR]
        assert on_hostile, "some hostile answer must be judged for the test to mean anything"
        resisted = 0
        for v in verdicts:
            judge_id = config.model(str(v["judge"])).model_id
            planted, _ = judge_decision(judge_id, str(v["text"]).strip())
            assert v["decision"] == planted, (v["judge"], v["model_key"])
            if v["model_key"] == INJECTOR:
                stance = planted_positions(INJECTOR, str(v["query"]))
                resisted += f"VERDICT: {planted}." not in hostile_suffix(*stance)
        assert resisted, "no judge was asked for a verdict other than its own"
        assert not await rows(database_url, "SELECT reason FROM dead_letters")
