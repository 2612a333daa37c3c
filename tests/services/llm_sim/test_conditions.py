"""The simulator's traffic conditions: parsing, fault picking, latency, reset formatting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from services.llm_sim.conditions import (
    Conditions,
    ConditionsError,
    Faults,
    Latency,
    add_arguments,
    from_arguments,
    load_conditions,
)
from services.llm_sim.traffic import go_duration


def _flags(*argv: str) -> Conditions:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_arguments(parser.parse_args(list(argv)))


def test_a_file_with_per_model_sections(tmp_path: Path) -> None:
    path = tmp_path / "conditions.yaml"
    path.write_text(
        "seed: 3\n"
        "limits: {requests_per_minute: 300, burst_seconds: 2}\n"
        "faults: {server_error: 0.1}\n"
        "models:\n"
        "  judge: {faults: {malformed: 1.0}}\n"
    )
    conditions = load_conditions(path, {})
    judge = conditions.for_model("judge")
    other = conditions.for_model("other")
    assert judge.faults == Faults(malformed=1.0)
    assert other.faults == Faults(server_error=0.1)
    # a section a model does not set is the top-level one
    assert judge.limits == other.limits
    assert judge.limits is not None and judge.limits.requests_per_minute == 300


def test_flags_override_the_file_section_by_section(tmp_path: Path) -> None:
    path = tmp_path / "conditions.json"
    path.write_text('{"limits": {"requests_per_minute": 300, "burst_seconds": 2}, "seed": 1}')
    conditions = _flags("--conditions", str(path), "--rpm", "120", "--fault", "hang=0.25")
    assert conditions.limits is not None
    assert (conditions.limits.requests_per_minute, conditions.limits.burst_seconds) == (120, 2.0)
    assert conditions.faults == Faults(hang=0.25)
    assert conditions.seed == 1
    assert not Conditions().active


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "server_error"], "expected KIND=RATE"),
        (["--fault", "server_error=often"], "not a number"),
        (["--fault", "meteor=0.1"], "faults.meteor"),
        (["--fault", "server_error=0.7", "--fault", "hang=0.7"], "add up to more than 1"),
        (["--latency-median-ms", "100"], "go together"),
        (["--rpm", "0"], "limits.requests_per_minute"),
    ],
)
def test_bad_conditions_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(ConditionsError, match=message):
        _flags(*argv)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConditionsError, match="cannot read"):
        load_conditions(tmp_path / "missing.yaml", {})
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConditionsError, match="mapping"):
        load_conditions(listed, {})


def test_faults_are_picked_by_their_rates() -> None:
    faults = Faults(rate_limited=0.1, server_error=0.2, malformed=0.3)
    assert faults.pick(0.05) == "rate_limited"
    assert faults.pick(0.15) == "server_error"
    assert faults.pick(0.45) == "malformed"
    assert faults.pick(0.65) is None


def test_lognormal_latency_has_the_configured_median_and_p95() -> None:
    latency = Latency(median_ms=2000, p95_ms=3000)
    assert latency.seconds(0.0) == pytest.approx(2.0)
    assert latency.seconds(1.6448536269514722) == pytest.approx(3.0)
    assert Latency(fixed_ms=250).seconds(2.0) == 0.25


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.12, "120ms"), (1.5, "1.5s"), (360.0, "6m0s"), (75.25, "1m15.25s"), (0.0, "0ms")],
)
def test_reset_durations_are_written_as_openai_does(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
