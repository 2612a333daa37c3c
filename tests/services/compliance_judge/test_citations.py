"""The judge's verdict contract: the paper's two fields parse as before; optional citations are
checked against the spec's anchors."""

from __future__ import annotations

import json

import pytest

from services.compliance_judge.app import parse_verdict
from services.llm_sim.answers import judge_citation
from specstress.errors import BadModelOutput
from specstress.method.spec import load_spec

SPEC = load_spec("builtin:example", "example", "1")


def test_paper_contract_without_citations_parses() -> None:
    verdict = parse_verdict('{"reasoning": "fine", "decision": "compliant"}', anchors=SPEC.anchors)
    assert (verdict.decision, verdict.cited_sections) == ("compliant", [])


def test_citations_are_kept_in_order_deduplicated_and_without_hash() -> None:
    text = json.dumps(
        {
            "reasoning": "r",
            "decision": "non-compliant",
            "cited_sections": ["#no_deception", "privacy", " no_deception "],
        }
    )
    verdict = parse_verdict(text, anchors=SPEC.anchors)
    assert verdict.cited_sections == ["no_deception", "privacy"]


def test_an_anchor_the_spec_lacks_is_bad_output() -> None:
    text = json.dumps({"reasoning": "r", "decision": "ambiguous", "cited_sections": ["nope"]})
    with pytest.raises(BadModelOutput, match="'nope' is not a section anchor"):
        parse_verdict(text, anchors=SPEC.anchors)
    with pytest.raises(BadModelOutput, match="cited_sections"):
        parse_verdict('{"reasoning": "r", "decision": "compliant", "cited_sections": "privacy"}')


def test_spec_anchors_are_every_heading_anchor() -> None:
    assert {"about", "no_deception", "privacy", "conversation_confidentiality"} <= SPEC.anchors
    assert all(SPEC.section(anchor).anchor == anchor for anchor in SPEC.anchors)


def test_the_simulator_cites_an_anchor_of_the_spec_it_was_shown() -> None:
    cited = {tuple(judge_citation("sim-judge-strict", str(i), SPEC.text)) for i in range(40)}
    assert all(len(c) == 1 and c[0] in SPEC.anchors for c in cited)
    assert len(cited) > 1
    assert judge_citation("sim-judge-strict", "x", "# A heading without anchors\ntext") == []
