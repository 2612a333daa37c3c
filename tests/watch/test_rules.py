"""The watch's rules, config checks and listing parsers, on their own."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from specstress.config import Config, Watch, WatchProvider
from specstress.llm.protocol import MalformedResponseError
from specstress.llm.providers import anthropic, gemini, openai
from specstress.watch import build_comparison, entry_for, matches, model_key_for, pick_rule
from specstress.watch.complete import settled
from specstress.watch.facts import Facts, GaveUp

BASE: dict[str, Any] = {
    "models": [
        {"key": f"m{i}", "family": "fam", "base_url": "http://x/v1", "model_id": f"m{i}"}
        for i in range(3)
    ],
    "roles": {
        "generators": [{"model": "m0"}],
        "targets": ["m0", "m1"],
        "spectrum": "m0",
        "classifier": "m0",
        "judges": ["m0", "m1", "m2"],
    },
    "model_sets": {"all": ["*"]},
    "specs": [{"id": "s", "version": "1", "path": "builtin:example", "families": ["fam"]}],
}


def provider(**rules: Any) -> dict[str, Any]:
    return {"key": "acct", "base_url": "https://api.example/v1", "api_key_env": "K", **rules}


def one_rule(**fields: Any) -> dict[str, Any]:
    """A watch of one account with one rule named "r" that takes every model into family "a"."""
    rule = {"name": "r", "include": ["*"], "family": "a", **fields}
    return {"providers": [provider(rules=[rule])]}


def config_with(watch: dict[str, Any]) -> Config:
    return Config.model_validate({**BASE, "watch": watch})


def test_globs_match_whole_ids_and_regexes_search() -> None:
    assert matches("gpt-5*", "gpt-5-mini")
    assert not matches("gpt-5*", "ft:gpt-5-mini")
    assert matches("re:^claude-(opus|sonnet)-4", "claude-sonnet-4-5")
    assert not matches("re:^claude-(opus|sonnet)-4", "claude-haiku-4")


def test_first_rule_that_includes_and_does_not_exclude_wins() -> None:
    account = WatchProvider.model_validate(
        provider(
            rules=[
                {"name": "minis", "include": ["gpt-5*"], "exclude": ["*-mini"], "family": "a"},
                {"name": "rest", "include": ["gpt-*"], "family": "b"},
            ]
        )
    )
    assert pick_rule(account, "gpt-5") is account.rules[0]
    assert pick_rule(account, "gpt-5-mini") is account.rules[1]
    assert pick_rule(account, "o3") is None


def test_model_keys_fit_the_key_alphabet() -> None:
    account = WatchProvider.model_validate(
        provider(rules=[{"name": "r", "include": ["*"], "family": "a", "key_prefix": "x-"}])
    )
    assert model_key_for(account.rules[0], "Gemini-2.5-Flash@001") == "x-gemini-2-5-flash-001"
    assert len(model_key_for(account.rules[0], "a" * 200)) == 64


def test_entry_comes_from_the_template_and_the_price_table() -> None:
    config = config_with(
        {
            "price_tables": {
                "list": {"re:-mini$": {"input_per_mtok": 0.1}, "*": {"input_per_mtok": 2.0}}
            },
            "providers": [
                provider(
                    protocol="anthropic",
                    rules=[
                        {
                            "name": "r",
                            "include": ["*"],
                            "family": "claude",
                            "vendor": "anthropic",
                            "template": {
                                "params": {"max_tokens": 4000},
                                "reasoning": {"budget_tokens": 2048},
                                "price_table": "list",
                            },
                        }
                    ],
                )
            ],
        }
    )
    account = config.watch.providers[0]
    entry = entry_for(config, account, account.rules[0], "claude-x-mini")
    assert entry.key == "claude-x-mini"
    assert (entry.protocol, entry.base_url, entry.api_key_env) == (
        "anthropic",
        "https://api.example/v1",
        "K",
    )
    assert entry.prices.input_per_mtok == 0.1
    assert entry.recorded_params() == {"max_tokens": 4000, "reasoning": {"budget_tokens": 2048}}
    assert entry_for(config, account, account.rules[0], "claude-y").prices.input_per_mtok == 2.0


@pytest.mark.parametrize(
    ("watch", "message"),
    [
        (one_rule(include=["re:("]), "not a valid regular expression"),
        (one_rule(template={"price_table": "nope"}), "unknown price table 'nope'"),
        (
            one_rule(template={"params": {"messages": []}}),
            "providers.acct.rules.r.template",
        ),
        ({"providers": [provider(), provider()]}, "duplicate key"),
        ({"poll_seconds": 0}, "greater than or equal to 1"),
        ({"providers": [provider(surprise=1)]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_watch_config_is_one_clear_error(watch: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Watch.model_validate(watch)
    assert message in str(caught.value)


def test_openai_listing_with_shutdown_dates() -> None:
    page = openai.parse_model_page(
        {
            "object": "list",
            "data": [
                {"id": "gpt-a", "object": "model", "created": 1, "owned_by": "o"},
                {"id": "gpt-b", "object": "model", "created": 2, "shutdown_date": "2026-01-01"},
                {"id": "gpt-c", "object": "model", "created": 3, "shutdown_date": "2027-01-01"},
            ],
        },
        today=date(2026, 6, 1),
    )
    assert [(m.model_id, m.deprecated) for m in page.models] == [
        ("gpt-a", False),
        ("gpt-b", True),
        ("gpt-c", False),
    ]
    assert page.next_cursor is None
    with pytest.raises(MalformedResponseError):
        openai.parse_model_page({"models": []})


def test_anthropic_listing_pages_by_last_id() -> None:
    page = anthropic.parse_model_page(
        {
            "data": [
                {
                    "type": "model",
                    "id": "claude-new",
                    "display_name": "Claude New",
                    "created_at": "2026-02-01T00:00:00Z",
                }
            ],
            "has_more": True,
            "first_id": "claude-new",
            "last_id": "claude-new",
        }
    )
    assert page.next_cursor == "claude-new"
    assert page.models[0].display_name == "Claude New"
    assert page.models[0].created == 1769904000.0
    request = anthropic.list_models_request("https://api.anthropic.com", None, "claude-new")
    assert request.url == "https://api.anthropic.com/v1/models?limit=1000&after_id=claude-new"
    assert request.headers["anthropic-version"] == anthropic.ANTHROPIC_VERSION
    last = anthropic.parse_model_page({"data": [], "has_more": False})
    assert last.next_cursor is None


def test_gemini_listing_keeps_generate_content_models() -> None:
    page = gemini.parse_model_page(
        {
            "models": [
                {
                    "name": "models/gemini-x",
                    "displayName": "Gemini X",
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                },
                {"name": "models/embed-x", "supportedGenerationMethods": ["embedContent"]},
            ],
            "nextPageToken": "tok",
        }
    )
    assert [m.model_id for m in page.models] == ["gemini-x"]
    assert page.next_cursor == "tok"
    request = gemini.list_models_request("https://generativelanguage.googleapis.com", None, "tok")
    assert request.url.endswith("/v1beta/models?pageSize=1000&pageToken=tok")


def test_comparison_from_hand_made_facts() -> None:
    config = Config.model_validate({**BASE, "model_sets": {"all": ["*"], "pair": ["m1", "m2"]}})
    facts = Facts(
        scenarios=["s1", "s2"],
        positions={
            "s1": {"m0": (3, 3), "m1": (3, 3), "new": (6, 0)},
            "s2": {"m0": (3, 3), "m1": (4, 2), "new": (3, 3)},
        },
        answers={
            "s1": {"m0": "r01", "m1": "r11", "new": "rn1"},
            "s2": {"m0": "r02", "m1": "r12", "new": "rn2"},
        },
        families={"m0": "fam", "m1": "fam", "new": "fam"},
        registered_at={"m0": 1.0, "m1": 2.0, "new": 3.0},
        refusals={"rn1": ("Complete Rejection", True), "rn2": ("Full Compliance", False)},
        verdicts={
            "rn1": {("m0", "s", "1"): "non-compliant", ("m1", "s", "1"): "non-compliant"},
            "r11": {("m0", "s", "1"): "compliant", ("m1", "s", "1"): "non-compliant"},
        },
    )
    c = build_comparison(config, facts, "new")
    assert c.against == "m1"  # the family's most recently registered other model
    [all_set] = c.disagreement  # `pair` does not hold the new model
    assert all_set.model_set == "all"
    # s1: D with = std(3,3,6) = 1.414..; without = 0 -> not newly high (threshold 1.5)
    assert all_set.newly_high == []
    assert all_set.delta == pytest.approx(((2**0.5) + 0.4714045) / 2 - 0.5 / 2, abs=1e-6)
    assert all_set.outliers == 0
    assert c.refusals_model.rate == 0.5
    [spec] = c.compliance
    assert (spec.model.majority, spec.model.any, spec.model.judged) == (1, 1, 1)
    assert (spec.family.majority, spec.family.any) == (0, 1)
    assert c.flag_rate_shift == 0.5
    assert [m.scenario_id for m in c.moved_furthest] == ["s1", "s2"]
    assert c.moved_furthest[0].distance == 6


def test_backfill_is_complete_when_nothing_is_left_to_come() -> None:
    config = Config.model_validate(BASE)
    judges = {(j, "s", "1"): "compliant" for j in ("m0", "m1", "m2")}
    facts = Facts(
        scenarios=["s1", "s2"],
        # s1 is flagged (D = 3 >= 1.5), s2 is not
        positions={"s1": {"m0": (0, 0), "new": (6, 6)}, "s2": {"m0": (3, 3), "new": (3, 3)}},
        answers={"s1": {"m0": "a1", "new": "n1"}, "s2": {"m0": "a2", "new": "n2"}},
        families={"m0": "fam", "new": "fam"},
        registered_at={"m0": 1.0, "new": 2.0},
        refusals={r: ("Full Compliance", False) for r in ("a1", "n1", "a2", "n2")},
        verdicts={"a1": dict(judges), "n1": dict(judges)},
    )
    assert settled(config, facts, "new")
    # a neighbour's verdict on the flagged scenario is still to come
    del facts.verdicts["a1"][("m2", "s", "1")]
    assert not settled(config, facts, "new")
    # ... or the pipeline gave up on it: nothing waits for it
    facts.gave_up = GaveUp(verdicts={("a1", "m2", "s")})
    assert settled(config, facts, "new")
    # an answer not yet classified holds it back, one given up on does not
    del facts.positions["s2"]["new"]
    assert not settled(config, facts, "new")
    facts.gave_up.classifications.add("n2")
    assert settled(config, facts, "new")
    # no answer at all, and none given up on
    del facts.answers["s2"]["new"]
    assert not settled(config, facts, "new")
