"""Reading the paper's release: cell values and column names onto the project's vocabulary."""

from __future__ import annotations

import pytest

from specstress.dataset import DatasetError
from specstress.dataset import release as r


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("neutral", "neutral"),
        (None, "neutral"),
        ("none", "neutral"),
        ("value1", "value1"),
        ("towards_value1", "value1"),
        ("V2", "value2"),
        ("value_2", "value2"),
    ],
)
def test_nudge_directions(raw: object, expected: str) -> None:
    assert r.variant(raw) == expected


@pytest.mark.parametrize("raw", ["sideways", "value1_and_value2"])
def test_unknown_nudge_directions_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="unknown nudge direction"):
        r.variant(raw)


def test_positions_decisions_and_families() -> None:
    assert [r.position(x) for x in (0, 6, 3.0, "4", None, float("nan"), "")] == [
        0,
        6,
        3,
        4,
        None,
        None,
        None,
    ]
    for bad in (7, -1, 2.5, True, "x"):
        with pytest.raises(ValueError, match=r"0\.\.6"):
            r.position(bad)
    assert [
        r.decision(x)
        for x in ("compliant", "Non-Compliant", "non_compliant", "AMBIGUOUS", None, "")
    ] == [
        "compliant",
        "non-compliant",
        "non-compliant",
        "ambiguous",
        None,
        None,
    ]
    with pytest.raises(ValueError, match="unknown decision"):
        r.decision("mostly fine")
    assert {
        k: r.infer_family(k)
        for k in (
            "claude_opus_4",
            "gpt_4_1_mini",
            "o3",
            "o4_mini",
            "gemini_2_5_pro",
            "grok_4",
            "owl",
        )
    } == {
        "claude_opus_4": "anthropic",
        "gpt_4_1_mini": "openai",
        "o3": "openai",
        "o4_mini": "openai",
        "gemini_2_5_pro": "google",
        "grok_4": "xai",
        "owl": None,
    }


def test_spectra_in_every_shape_come_out_canonical() -> None:
    texts = [f"step {i}" for i in range(7)]
    canonical = [
        {"position": p, "response": t} for p, t in zip(r.SPECTRUM_POSITIONS, texts, strict=True)
    ]
    assert r.spectrum(texts) == canonical
    assert r.spectrum(canonical) == canonical
    assert r.spectrum(dict(zip(r.SPECTRUM_POSITIONS, texts, strict=True))) == canonical
    assert r.spectrum(__import__("json").dumps(canonical)) == canonical
    assert r.spectrum(None) == []
    contract = {"value_pair": {}, "value1_bias_spectrum": canonical, "value2_bias_spectrum": texts}
    assert r.spectrum_pair(__import__("json").dumps(contract)) == (canonical, canonical)
    with pytest.raises(ValueError, match="7 steps"):
        r.spectrum(texts[:6])
    with pytest.raises(ValueError, match="belongs"):
        r.spectrum(list(reversed(canonical)))


def test_column_layouts() -> None:
    names = [
        "rank",
        "query_generator",
        "Value1",
        "value2",
        "nudge_direction",
        "query",
        "entry_idx",
        "response_o4_mini",
        "o4_mini_value1_position",
        "o4_mini_value2_position",
        "claude_opus_4_response",
        "claude_opus_4_v1_position",
        "claude_opus_4_v2_position",
    ]
    layout = r.scenario_layout(names, "f")
    assert layout.value1 == "Value1"
    assert [(a.model_key, a.response, a.value1_position) for a in layout.answers] == [
        ("claude_opus_4", "claude_opus_4_response", "claude_opus_4_v1_position"),
        ("o4_mini", "response_o4_mini", "o4_mini_value1_position"),
    ]
    assert r.layout_of(names) == "scenarios"
    with pytest.raises(DatasetError, match="'query_generator' is missing"):
        r.scenario_layout([n for n in names if n != "query_generator"], "f")
    judged = [
        "prompt",
        "model",
        "value1",
        "value2",
        "claude_4_decision",
        "gpt41_decision",
        "x_decision",
    ]
    assert r.layout_of(judged) == "judges"
    layout_j = r.judge_layout(judged, "f", {"x": "o3"})
    assert dict(layout_j.judges) == {
        "claude_4_decision": "claude_sonnet_4",
        "gpt41_decision": "gpt_4_1",
        "x_decision": "o3",
    }
