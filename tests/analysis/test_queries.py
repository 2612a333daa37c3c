"""The analysis views of migration 0007 on a hand-built database: outliers (Figure 6), judge
statistics, compliance under both rules, Table 2, Figure 2 and spec citations."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from math import ceil
from typing import Any

import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from specstress.analysis import queries as analysis
from specstress.analysis.queries import Filters
from specstress.analysis.reports import OutputFormat, build_report, render
from specstress.db.engine import create_engine
from specstress.errors import InputError
from specstress.method.agreement import ensemble_statistics
from tests.support.analysis_facts import (
    BLUE,
    JUDGES,
    RED,
    TARGETS,
    analysis_config,
    insert_citations,
    insert_disagreement,
    insert_models,
    insert_positions,
    insert_responses,
    insert_scenarios,
    insert_verdicts,
    query,
    verdict_id,
)
from tests.support.schema import mentioning, schema_differences

MY_TABLES = {
    "model_set_rules",
    "model_vendors",
    "analysis_settings",
    "spec_sections",
    "verdict_citations",
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    await insert_models(engine, {k: "red" for k in RED} | {k: "blue" for k in BLUE})
    await analysis.sync_config(engine, analysis_config(database_url))
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_migration_matches_schema_for_the_analysis_tables(engine: AsyncEngine) -> None:
    assert mentioning(await schema_differences(engine), MY_TABLES) == []


async def test_model_sets_and_vendors_follow_the_config(engine: AsyncEngine) -> None:
    members = await query(engine, "SELECT model_set, model_key FROM model_set_members")
    by_set: dict[str, set[str]] = {}
    for row in members:
        by_set.setdefault(row["model_set"], set()).add(row["model_key"])
    assert by_set == {
        "all": set(TARGETS),
        "red": set(RED),
        "blue": set(BLUE),
        "pair": {"red1", "red2"},
    }
    vendors = {
        r["model_key"]: r["vendor"] for r in await query(engine, "SELECT * FROM model_vendors")
    }
    assert (vendors["judge-grey"], vendors["judge-red"], vendors["blue3"]) == (
        "blue",
        "red",
        "blue",
    )


def _uniform(v1: int, v2: int) -> dict[str, tuple[int, int]]:
    return dict.fromkeys(TARGETS, (v1, v2))


def _hand_positions() -> dict[str, dict[str, tuple[int, int]]]:
    s1 = _uniform(4, 3) | {"red1": (0, 3), "blue6": (2, 3), "blue7": (2, 3)}
    # blue7 is 4 away from 8 others: one short of the 9 of 11 it takes
    s2 = _uniform(3, 2) | {"blue4": (3, 3), "blue5": (3, 3), "blue6": (3, 3), "blue7": (3, 6)}
    s3 = _uniform(3, 0) | {"red1": (6, 0), "red2": (0, 0), "blue1": (3, 6), "blue2": (3, 5)}
    # blue7 unclassified: 11 answers, so 8 of the other 10 are needed, and red1 has exactly 8
    s4 = _uniform(4, 3) | {"blue5": (1, 3), "blue6": (1, 3)}
    s4 = {k: v for k, v in (s4 | {"red1": (0, 3)}).items() if k != "blue7"}
    return {"s1": s1, "s2": s2, "s3": s3, "s4": s4}


async def test_outliers_on_hand_computed_cases(engine: AsyncEngine) -> None:
    await insert_scenarios(engine, ["s1", "s2", "s3", "s4"])
    await insert_positions(engine, _hand_positions())
    checks = {
        (r["model_set"], r["scenario_id"], r["model_key"]): r
        for r in await query(engine, "SELECT * FROM outlier_checks")
    }
    assert checks[("all", "s1", "red1")]["value1_far"] == 9
    assert checks[("all", "s1", "red1")]["required"] == 9  # ceil(0.75 * 11)
    assert checks[("all", "s2", "blue7")]["value2_far"] == 8
    assert not checks[("all", "s2", "blue7")]["value2_outlier"]
    assert checks[("all", "s4", "red1")]["required"] == 8  # ceil(0.75 * 10)
    assert checks[("red", "s1", "red1")]["required"] == 3  # ceil(0.75 * 4)
    outliers = {
        (r["model_set"], r["scenario_id"], r["model_key"], v)
        for r in checks.values()
        for v in ("value1", "value2")
        if r[f"{v}_outlier"]
    }
    assert outliers == {
        ("all", "s1", "red1", "value1"),
        ("all", "s3", "blue1", "value2"),
        ("all", "s3", "blue2", "value2"),
        ("all", "s4", "red1", "value1"),
        ("red", "s1", "red1", "value1"),
        ("red", "s4", "red1", "value1"),
        ("blue", "s3", "blue1", "value2"),
        ("blue", "s3", "blue2", "value2"),
    }
    figure6 = {
        (r["model_set"], r["model_key"]): r
        for r in await query(engine, "SELECT * FROM figure6_outliers WHERE selection = '*'")
    }
    assert figure6[("all", "red1")]["outlier_scenarios"] == 2
    assert figure6[("all", "red1")]["value1_outliers"] == 2
    assert figure6[("all", "blue7")]["scenarios"] == 3
    assert figure6[("all", "blue2")]["outlier_rate"] == 0.25
    assert figure6[("pair", "red1")]["outlier_scenarios"] == 0  # two answers: nobody is an outlier
    assert sum(r["outlier_scenarios"] for r in figure6.values()) == 8


async def test_outlier_settings_come_from_the_config(
    engine: AsyncEngine, database_url: str
) -> None:
    await insert_scenarios(engine, ["s1"])
    await insert_positions(engine, {"s1": _hand_positions()["s1"]})
    config = analysis_config(database_url)
    looser = config.model_copy(
        update={"outliers": config.outliers.model_copy(update={"min_gap": 2, "share": 0.2})}
    )
    await analysis.sync_config(engine, looser)
    rows = await query(
        engine,
        "SELECT model_key, required, value1_far FROM outlier_checks "
        "WHERE model_set = 'all' AND scenario_id = 's1' AND value1_outlier",
    )
    # ceil(0.2 * 11) = 3: blue6 and blue7 sit 2 away from the nine at 4 and red1 from all eleven
    assert {r["model_key"] for r in rows} == set(TARGETS)
    assert {r["required"] for r in rows} == {3}


@pytest.mark.parametrize("seed", range(3))
async def test_outliers_match_a_brute_force_count(engine: AsyncEngine, seed: int) -> None:
    rng = random.Random(seed)
    positions = {
        f"x{i}": {
            m: (rng.choice([0, 1, 3, 5, 6]), rng.randint(0, 6))
            for m in TARGETS
            if rng.random() < 0.95
        }
        for i in range(25)
    }
    await insert_scenarios(engine, positions)
    await insert_positions(engine, positions)
    expected = set()
    for scenario, by_model in positions.items():
        n = len(by_model)
        for model, own in by_model.items():
            for v in (0, 1):
                far = sum(
                    abs(own[v] - other[v]) >= 4 for m, other in by_model.items() if m != model
                )
                if n >= 3 and far >= ceil(0.75 * (n - 1)):
                    expected.add((scenario, model, v))
    rows = await query(engine, "SELECT * FROM outlier_checks WHERE model_set = 'all'")
    got = {
        (r["scenario_id"], r["model_key"], v)
        for r in rows
        for v in (0, 1)
        if r[f"value{v + 1}_outlier"]
    }
    assert got == expected
    assert expected, "the random case should hold some outliers"


C, N, A = "compliant", "non-compliant", "ambiguous"


def _hand_verdicts() -> list[tuple[str, str, str, str]]:
    """(scenario, model, judge, decision) for the red family's answers; see the test below."""
    rows: list[tuple[str, str, str, str]] = []

    def rate(scenario: str, models: list[str], red: str, blue: str, grey: str) -> None:
        for m in models:
            rows.extend(
                [
                    (scenario, m, "judge-red", red),
                    (scenario, m, "judge-blue", blue),
                    (scenario, m, "judge-grey", grey),
                ]
            )

    rate("s1", RED, N, A, C)
    rate("s2", RED[:4], N, A, C)
    rate("s2", ["red5"], N, C, C)
    rate("s3", ["red1"], C, C, C)
    rate("s3", RED[1:], N, N, N)
    rate("s4", RED, N, N, N)
    rate("s5", RED, C, C, A)
    return rows


async def _judged_database(engine: AsyncEngine) -> None:
    scenarios = ["s1", "s2", "s3", "s4", "s5", "s6"]
    await insert_scenarios(engine, scenarios)
    await insert_responses(engine, [(s, m) for s in scenarios for m in RED])
    await insert_verdicts(engine, _hand_verdicts())
    d_red = {"s1": 0.5, "s2": 1.2, "s3": 2.2, "s4": 2.9, "s5": 3.0, "s6": 1.5}
    d_all = {"s1": 1.6, "s2": 0.3, "s3": 0.4, "s4": 2.0, "s5": 0.1, "s6": 0.2}
    await insert_disagreement(
        engine,
        [(s, "red", d) for s, d in d_red.items()] + [(s, "all", d) for s, d in d_all.items()],
    )


async def _judged_red_rows(engine: AsyncEngine, view: str, order_by: str) -> list[dict[str, Any]]:
    """The rows of `view` for model set "red" over all scenarios, on the judged database."""
    await _judged_database(engine)
    return await query(
        engine,
        f"SELECT * FROM {view} WHERE selection = '*' AND model_set = 'red' ORDER BY {order_by}",
    )


async def test_judge_statistics_views_on_hand_counts(engine: AsyncEngine) -> None:
    await _judged_database(engine)
    rates = {
        r["judge"]: r
        for r in await query(engine, "SELECT * FROM judge_flag_rates WHERE selection = '*'")
    }
    assert {j: rates[j]["flagged"] for j in JUDGES} == {
        "judge-red": 19,
        "judge-blue": 18,
        "judge-grey": 14,
    }
    assert rates["judge-blue"]["ambiguous"] == 9
    assert rates["judge-grey"]["flag_rate"] == 14 / 25
    pairs = {
        (r["judge_a"], r["judge_b"]): r
        for r in await query(engine, "SELECT * FROM judge_pair_agreement WHERE selection = '*'")
    }
    assert pairs[("judge-blue", "judge-red")]["flag_agreements"] == 24
    assert pairs[("judge-blue", "judge-red")]["decision_agreements"] == 15
    assert pairs[("judge-grey", "judge-red")]["flag_agreement"] == 10 / 25
    assert pairs[("judge-blue", "judge-grey")]["flag_agreements"] == 11
    # decision profiles: s1 red1-5 and s2 red1-4 (n, a, c); s2 red5 (n, c, c); s3 red1 (c, c, c);
    # s3 red2-5 and s4 (n, n, n); s5 (c, c, a)
    judges, profiles = (await analysis.judge_profiles(engine, Filters()))[("rules", "1")]
    assert judges == 3
    assert profiles == {(1, 1, 1): 9, (2, 1, 0): 1, (3, 0, 0): 1, (0, 3, 0): 9, (2, 0, 1): 5}
    stats = ensemble_statistics(profiles, judges)
    flags = [[1, 2]] * 9 + [[2, 1]] + [[3, 0]] + [[0, 3]] * 9 + [[2, 1]] * 5
    assert stats.fleiss_kappa_flags == pytest.approx(statsmodels_fleiss_kappa(np.array(flags)))
    assert stats.majority_flag_rate == pytest.approx(18 / 25)
    assert stats.any_flag_rate == pytest.approx(24 / 25)

    self_pref = {
        (r["judge"], r["model_key"]): r
        for r in await query(engine, "SELECT * FROM judge_model_flags WHERE selection = '*'")
    }
    red5 = self_pref[("judge-red", "red5")]
    assert red5["same_vendor"] is True
    assert (red5["verdicts"], red5["flag_rate"]) == (5, 0.8)
    assert red5["other_judges_flag_rate"] == pytest.approx(0.6)
    assert self_pref[("judge-grey", "red5")]["same_vendor"] is False

    compliance = {
        r["model_key"]: r
        for r in await query(engine, "SELECT * FROM compliance_by_model WHERE selection = '*'")
    }
    assert (compliance["red5"]["majority_flagged"], compliance["red5"]["any_flagged"]) == (3, 5)
    assert (compliance["red1"]["majority_flagged"], compliance["red1"]["any_flagged"]) == (3, 4)


async def test_figure2_bins_frequent_noncompliance_by_d(engine: AsyncEngine) -> None:
    rows = await _judged_red_rows(engine, "figure2_noncompliance_by_d", "bin")
    assert [r["bin_label"] for r in rows] == ["[0,1)", "[1,1.5)", "[1.5,2)", "[2,2.5)", "[2.5,3]"]
    assert [(r["scenarios"], r["frequent_majority"], r["frequent_any"]) for r in rows] == [
        (1, 1, 1),  # s1: every answer flagged by 2 of 3
        (1, 0, 1),  # s2: red5 flagged by one judge only
        (0, 0, 0),  # s6 (D = 1.5) was never judged
        (1, 0, 0),  # s3: red1 flagged by nobody
        (2, 1, 2),  # s4 (all flag), s5 (D = 3.0, one judge flags)
    ]
    assert rows[4]["majority_rate"] == 0.5
    assert rows[2]["majority_rate"] is None


async def test_table2_samples_by_hash_and_reports_both_rules(engine: AsyncEngine) -> None:
    samples = await _judged_red_rows(engine, "table2_samples", "sample_rank")
    high_red = ["s3", "s4", "s5", "s6"]  # D >= 1.5
    by_hash = sorted(high_red, key=lambda s: hashlib.md5(s.encode()).hexdigest())
    assert [r["scenario_id"] for r in samples] == by_hash
    assert {r["subset_size"] for r in samples} == {4}

    rows = await analysis.table2(engine, Filters(model_set="red"), n=3)
    assert [(r["subset"], r["model_set"]) for r in rows] == [
        ("random", None),
        ("high_disagreement", "red"),
    ]
    high = rows[1]
    outcome = {"s3": (False, False), "s4": (True, True), "s5": (False, True), "s6": None}
    sample = by_hash[:3]
    judged = [s for s in sample if outcome[s] is not None]
    assert (high["sampled"], high["judged"]) == (3, len(judged))
    assert high["all_fail_majority"] == sum(outcome[s][0] for s in judged)  # type: ignore[index]
    assert high["all_fail_any"] == sum(outcome[s][1] for s in judged)  # type: ignore[index]
    random_row = rows[0]
    assert (random_row["subset_size"], random_row["sampled"]) == (6, 3)
    everything = await analysis.table2(engine, Filters(), n=1000)
    assert {(r["subset"], r["model_set"]): r["sampled"] for r in everything} == {
        ("random", None): 6,
        ("high_disagreement", "red"): 4,
        ("high_disagreement", "all"): 2,
    }
    assert everything[0]["majority_rate"] == pytest.approx(2 / 5)  # s1, s4 of five judged
    assert everything[0]["any_rate"] == pytest.approx(4 / 5)  # s1, s2, s4, s5


async def test_citations_are_reported_per_spec_section(engine: AsyncEngine) -> None:
    await _judged_database(engine)
    await insert_citations(
        engine,
        [
            (verdict_id("s1", "red1", "judge-red"), "no_deception", 1),
            (verdict_id("s1", "red1", "judge-red"), "privacy", 2),
            (verdict_id("s1", "red2", "judge-blue"), "no_deception", 1),
            (verdict_id("s5", "red2", "judge-blue"), "no_deception", 1),
        ],
    )
    rows = await query(
        engine, "SELECT * FROM spec_section_citations WHERE selection = '*' ORDER BY anchor"
    )
    assert [
        (
            r["anchor"],
            r["citations"],
            r["answers"],
            r["non_compliant"],
            r["ambiguous"],
            r["compliant"],
        )
        for r in rows
    ] == [("no_deception", 3, 3, 1, 1, 1), ("privacy", 1, 1, 1, 0, 0)]
    assert rows[0]["title"] == "Do not deceive the user"
    assert rows[0]["authority"] == "platform"


async def test_report_command_reads_every_table(engine: AsyncEngine, database_url: str) -> None:
    await _judged_database(engine)
    config = analysis_config(database_url)
    agreement = await build_report(config, "judge-agreement")
    kappa = next(
        r for r in agreement if r["statistic"] == "Fleiss' kappa" and r["basis"] == "flagged"
    )
    assert (kappa["judges"], kappa["answers"]) == (3, 25)
    for name in (
        "table2",
        "figure2",
        "figure6",
        "disagreement",
        "compliance",
        "judges",
        "judge-pairs",
        "self-preference",
        "citations",
    ):
        rows = await build_report(config, name, model_set="red", spec_id="rules", n=10)
        for output in OutputFormat:
            assert render(rows, output) or (output is OutputFormat.csv and not rows)
    # by default Figure 2 bins by the D of the spec's own family set ("red" is family:red)
    default = await build_report(config, "figure2")
    assert {r["model_set"] for r in default} == {"red"}
    assert len(await build_report(config, "figure2", model_set="all")) == 5
    csv_text = render(await build_report(config, "figure2", model_set="red"), OutputFormat.csv)
    assert csv_text.splitlines()[0].startswith("selection,model_set,spec_id")
    assert len(csv_text.splitlines()) == 6
    with pytest.raises(InputError, match="no model set 'nope'"):
        await build_report(config, "figure6", model_set="nope")
    with pytest.raises(InputError, match="unknown report"):
        await build_report(config, "figure99")
    with pytest.raises(InputError, match="no selection named 'missing'"):
        await build_report(config, "figure6", selection="missing")
