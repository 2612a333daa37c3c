"""The whole pipeline as processes on the simulator: planted truth in, the same truth out."""

from __future__ import annotations

import pytest

from services.llm_sim.answers import judge_citation
from services.llm_sim.personas import scenario_drop
from specstress.analysis.reports import REPORTS, build_report
from specstress.api import add_model, start_run
from specstress.local.stack import wait_until_idle
from specstress.method.spec import load_spec
from tests.support.pipeline_harness import (
    RunningStack,
    check_planted_disagreement,
    planted_disagreement,
    rows,
)

pytestmark = pytest.mark.e2e
PAIRS = 12
SEED = 11


async def test_pipeline_recovers_planted_truth_and_reruns_for_free(
    finished_stack: RunningStack, database_url: str
) -> None:
    config = finished_stack.config

    pairs = await rows(database_url, "SELECT pair_id, value1, value2 FROM value_pairs")
    assert len(pairs) == PAIRS
    scenarios = await rows(database_url, "SELECT pair_id, variant FROM scenarios")
    drops = await rows(database_url, "SELECT pair_id, variant, reason FROM scenario_drops")
    assert len(scenarios) + len(drops) == 3 * PAIRS
    # the simulator's writers refuse or forget the tag on known pairs: exactly those drop
    planted_drops = {
        p["pair_id"] for p in pairs if scenario_drop(str(p["value1"]), str(p["value2"]))
    }
    assert {d["pair_id"] for d in drops} == planted_drops

    targets = len(config.roles.targets)
    responses = await rows(database_url, "SELECT scenario_id FROM responses")
    assert len(responses) == len(scenarios) * targets
    spectra = await rows(database_url, "SELECT pair_id FROM spectra")
    assert len(spectra) == len({s["pair_id"] for s in scenarios})
    classified = await rows(database_url, "SELECT response_id FROM classifications")
    assert len(classified) == len(responses)

    expected = await check_planted_disagreement(finished_stack, database_url)
    assert any(v >= 1.5 for v in expected.values()), "the run should flag something"

    # every flagged scenario: each answer of the spec's family judged by each judge
    to_judge = await rows(
        database_url,
        "SELECT count(*) AS n FROM responses r JOIN models m USING (model_key) "
        "WHERE m.family = 'aurora' AND r.scenario_id IN "
        "(SELECT scenario_id FROM disagreement WHERE high)",
    )
    verdicts = await rows(database_url, "SELECT count(*) AS n FROM verdicts")
    assert verdicts[0]["n"] == to_judge[0]["n"] * len(config.roles.judges)
    assert (await rows(database_url, "SELECT count(*) AS n FROM dead_letters"))[0]["n"] == 0

    # each verdict keeps the spec section its judge cited (the simulator's planted pick)
    spec = load_spec("builtin:example", "example", "1")
    cited = await rows(
        database_url,
        "SELECT v.judge, r.text, c.anchor, c.rank FROM verdict_citations c "
        "JOIN verdicts v USING (verdict_id) JOIN responses r USING (response_id)",
    )
    assert len(cited) == verdicts[0]["n"]
    for c in cited:
        judge_id = config.model(str(c["judge"])).model_id
        assert [c["anchor"]] == judge_citation(judge_id, str(c["text"]).strip(), spec.text)
    # every report reads on the pipeline's own data
    for name in REPORTS:
        await build_report(config, name)
    citations = await build_report(config, "citations")
    assert sum(int(r["citations"]) for r in citations) == len(cited)

    # the same run again: nothing new is stored and nothing is paid for
    before = await rows(
        database_url,
        "SELECT (SELECT count(*) FROM llm_calls) AS calls, (SELECT count(*) FROM responses) AS r",
    )
    await start_run(config, PAIRS, SEED)
    await wait_until_idle(config, timeout=120, stack=finished_stack.stack)
    after = await rows(
        database_url,
        "SELECT (SELECT count(*) FROM llm_calls) AS calls, (SELECT count(*) FROM responses) AS r",
    )
    assert after == before

    # a new model release: registering it backfills and re-scores every scenario
    await add_model(config, "borealis-latecomer")
    await wait_until_idle(config, timeout=180, stack=finished_stack.stack)
    late = await rows(
        database_url,
        "SELECT count(*) AS n FROM responses r JOIN classifications c USING (response_id) "
        "WHERE r.model_key = 'borealis-latecomer'",
    )
    assert late[0]["n"] == len(scenarios)
    stored_all = await rows(
        database_url, "SELECT DISTINCT members FROM disagreement WHERE model_set = 'all'"
    )
    assert stored_all == [{"members": targets + 1}]
    expected = await planted_disagreement(finished_stack, database_url)
    stored = {
        (str(r["scenario_id"]), str(r["model_set"])): float(r["disagreement"])
        for r in await rows(database_url, "SELECT * FROM disagreement")
    }
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, abs=1e-9), key
