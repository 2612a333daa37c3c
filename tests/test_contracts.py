"""Event contracts: versioned, strict, with deterministic message ids."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from specstress.contracts import ALL_EVENTS, PairSampled, ScenarioCreated
from specstress.ids import pair_id, scenario_id


def test_message_id_is_a_function_of_content() -> None:
    a = ScenarioCreated(scenario_id="s1", pair_id="p1", variant="neutral")
    b = ScenarioCreated(scenario_id="s1", pair_id="p1", variant="neutral")
    c = ScenarioCreated(scenario_id="s1", pair_id="p1", variant="value1")
    assert a.message_id() == b.message_id() != c.message_id()


def test_unknown_fields_and_versions_are_rejected() -> None:
    body = PairSampled(pair_id="p", value1="a", value2="b", taxonomy_version="t", index=0)
    raw = body.model_dump()
    with pytest.raises(ValidationError):
        PairSampled.model_validate({**raw, "extra": 1})
    with pytest.raises(ValidationError):
        PairSampled.model_validate({**raw, "schema_version": 2})
    assert PairSampled.model_validate_json(body.model_dump_json()) == body


def test_every_event_has_its_own_subject_under_the_prefix() -> None:
    subjects = [e.subject for e in ALL_EVENTS]
    assert len(set(subjects)) == len(subjects)
    assert all(s.startswith("specstress.") and s.count(".") == 2 for s in subjects)


def test_entity_ids_are_stable_and_input_sensitive() -> None:
    assert pair_id("honesty", "kindness", "v1") == pair_id("honesty", "kindness", "v1")
    assert pair_id("honesty", "kindness", "v1") != pair_id("kindness", "honesty", "v1")
    assert len(scenario_id("p", "neutral", "gen", "abc")) == 32
    assert scenario_id("p", "neutral", "gen", "abc") != scenario_id("p", "neutral", "gen", "abd")
