"""The pipeline benchmark on a handful of pairs: correctness only, its speed is not asserted.

Two replicas of the responder and the classifier share the consumers, so the run also checks
that shared work is neither lost nor done twice.
"""

from __future__ import annotations

import os

import pytest

from bench.pipeline import FIGURES, PROBLEMS, parse_args, run
from specstress.local.stack import SIM_URL_ENV

pytestmark = pytest.mark.e2e


async def test_benchmark_run_does_all_the_work_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the benchmark points its own process at the servers it starts; put the variables back
    for name in ("NATS_URL", "DATABASE_URL", SIM_URL_ENV):
        monkeypatch.setenv(name, os.environ.get(name, "unset"))
    args = parse_args(
        ["--pairs", "4", "--replicas", "2", "--warmup-share", "0", "--timeout", "240"]
    )

    result = await run(args)

    assert all(result[figure] is not None for figure in FIGURES)
    checks = result["checks"]
    assert {key: checks[key] for key in PROBLEMS} == dict.fromkeys(PROBLEMS, 0)
    assert checks["scenarios"] > 0
    assert checks["paid_calls"] == checks["simulator_answers"] > 0
    assert checks["verdicts"] > 0
    assert set(result["replica_messages"]) == {
        "responder",
        "responder-1",
        "classifier",
        "classifier-1",
    }
    assert {p["name"] for p in result["processes"]} >= {"postgres", "nats", "llm_sim"}
    # every stage made calls, so every stage's rate is there
    assert set(result["per_stage_calls_per_second"]) == {
        "scenario_generator",
        "responder",
        "spectrum_builder",
        "classifier",
        "compliance_judge",
    }
