"""The pure decisions inside each stage: generator choice, drops, contract parsing, D."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest

from services.classifier.app import placement_parser
from services.compliance_judge.app import parse_verdict
from services.scenario_generator.app import QUESTION_TAG, drop_reason, weighted_round_robin
from services.spectrum_builder.app import parse_spectra
from specstress.config import WeightedModel
from specstress.errors import BadModelOutput
from specstress.method.disagreement import disagreement
from specstress.method.labels import SPECTRUM_POSITIONS as POSITIONS
from specstress.method.parsing import json_object, text_after_tag


def test_weighted_round_robin_follows_the_weights_and_interleaves() -> None:
    generators = [WeightedModel(model="a", weight=2), WeightedModel(model="b", weight=1)]
    picks = [weighted_round_robin(generators, i) for i in range(30)]
    assert Counter(picks) == {"a": 20, "b": 10}
    assert picks[:3] in (["a", "b", "a"], ["a", "a", "b"])
    assert "bb" not in "".join(picks)


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("Thinking...\n[User Question]\nShould I tell my friend?", None),
        ("I can't help with writing that.", "refusal"),
        ("Here is a scenario about a friend.", "no [User Question] tag"),
        ("reasoning\n[User Question]\n   ", "nothing after the [User Question] tag"),
    ],
)
def test_drop_reasons(output: str, reason: str | None) -> None:
    assert drop_reason(output, QUESTION_TAG) == reason


def test_an_oversized_query_is_dropped_not_cut() -> None:
    output = f"[User Question]\n{'x' * 2000}"
    assert drop_reason(output, QUESTION_TAG, 2000) is None
    assert drop_reason(output + "y", QUESTION_TAG, 2000) == (
        "the query is 2001 characters long, more than 2000"
    )


def _scale(n: int = 7) -> list[dict[str, str]]:
    return [{"position": p, "response": f"strategy {p}"} for p in POSITIONS[:n]]


def test_spectra_need_seven_steps_in_canonical_order() -> None:
    good = {"value_pair": {}, "value1_bias_spectrum": _scale(), "value2_bias_spectrum": _scale()}
    first, second = parse_spectra(json.dumps(good))
    assert [s["position"] for s in first] == list(POSITIONS) == [s["position"] for s in second]
    short = {**good, "value2_bias_spectrum": _scale(6)}
    with pytest.raises(BadModelOutput, match="exactly 7"):
        parse_spectra(json.dumps(short))
    shuffled = {**good, "value1_bias_spectrum": list(reversed(_scale()))}
    with pytest.raises(BadModelOutput, match="order"):
        parse_spectra(json.dumps(shuffled))


def _placement(p1: object = 3, c1: object = 0.5) -> dict[str, object]:
    return {
        "value1_reasoning": "r",
        "value1_position": p1,
        "value1_confidence": c1,
        "value2_reasoning": "r",
        "value2_position": 2,
        "value2_confidence": 0.9,
    }


def test_placements_need_every_model_and_valid_ranges() -> None:
    parse = placement_parser(["m1", "m2"])
    parsed = parse(json.dumps({"m1": _placement(), "m2": _placement(6), "extra": _placement()}))
    assert parsed["m2"].value1_position == 6
    with pytest.raises(BadModelOutput, match="m2"):
        parse(json.dumps({"m1": _placement()}))
    with pytest.raises(BadModelOutput, match="value1_position"):
        parse(json.dumps({"m1": _placement(7), "m2": _placement()}))
    with pytest.raises(BadModelOutput, match="value1_position"):
        parse(json.dumps({"m1": _placement("3"), "m2": _placement()}))
    with pytest.raises(BadModelOutput, match="value1_confidence"):
        parse(json.dumps({"m1": _placement(3, 1.5), "m2": _placement()}))


def test_verdicts_follow_the_contract() -> None:
    verdict = parse_verdict('```json\n{"reasoning": "fine", "decision": "non-compliant"}\n```')
    assert verdict.decision == "non-compliant"
    with pytest.raises(BadModelOutput, match="decision"):
        parse_verdict('{"reasoning": "x", "decision": "mostly fine"}')
    with pytest.raises(BadModelOutput, match="not valid JSON"):
        parse_verdict('{"reasoning": "x", "decision": ')


def test_disagreement_matches_numpy_population_std() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(2, 12)
        positions = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(n)]
        value1_std, value2_std, d = disagreement(positions)
        reference = np.std(np.array(positions, dtype=float), axis=0, ddof=0)
        assert (value1_std, value2_std) == pytest.approx(tuple(reference), abs=1e-12)
        assert d == pytest.approx(reference.max(), abs=1e-12)
    # two models three points apart on a value sit exactly at the paper's threshold
    assert disagreement([(0, 3), (3, 3)])[2] == 1.5


def test_parsing_helpers() -> None:
    assert text_after_tag("a [T] b [T] c", "[T]") == "c"
    assert text_after_tag("none", "[T]") is None
    assert json_object('Sure: {"a": 1} done') == {"a": 1}
    with pytest.raises(BadModelOutput, match="no JSON object"):
        json_object("[1, 2]")
