"""specstress.paper.yaml: the paper's study as a config; it must validate and say what the paper
says (12 targets, three generators a third each, three judges, six model sets, the spec)."""

from __future__ import annotations

import pytest

from specstress.config import Config, load_config
from specstress.method.spec import load_spec
from tests.paths import PAPER_CONFIG, SHARED_DATA

OPENAI_SPEC = SHARED_DATA / "openai_model_spec" / "model_spec_2025-04-11.md"
DATASET_KEYS = [
    "claude_opus_4",
    "claude_sonnet_4",
    "claude_3_7_sonnet",
    "claude_3_5_sonnet",
    "claude_opus_3",
    "gpt_4_1",
    "gpt_4_1_mini",
    "gpt_4o",
    "o3",
    "o4_mini",
    "gemini_2_5_pro",
    "grok_4",
]


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Config:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY"):
        monkeypatch.setenv(name, f"dummy-{name.lower()}")
    for name in ("NATS_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return load_config(PAPER_CONFIG)


def test_paper_config_validates_with_every_key_resolvable(config: Config) -> None:
    assert config.roles.targets == DATASET_KEYS
    for model in config.models:
        key = model.api_key()
        assert key is not None and key.get_secret_value().startswith("dummy-")
        assert model.prices.output_per_mtok > 0, model.key
        assert not model.simulated


def test_providers_and_protocols(config: Config) -> None:
    protocols = {m.key: (m.protocol, m.base_url) for m in config.models}
    assert {protocols[k][0] for k in DATASET_KEYS[:5]} == {"anthropic"}
    assert {protocols[k] for k in DATASET_KEYS[5:10]} == {("openai", "https://api.openai.com/v1")}
    assert protocols["gemini_2_5_pro"][0] == "gemini"
    assert protocols["grok_4"] == ("openai", "https://api.x.ai/v1")


def test_generators_judges_sets_and_spec(config: Config) -> None:
    generators = {g.model: g.weight for g in config.roles.generators}
    assert generators == {"claude_opus_4_thinking": 1, "claude_3_7_sonnet_thinking": 1, "o3": 1}
    for key in ("claude_opus_4_thinking", "claude_3_7_sonnet_thinking"):
        assert config.model(key).reasoning is not None
    assert config.roles.judges == ["claude_sonnet_4", "o3", "gemini_2_5_pro"]
    targets = [(k, config.model(k).family) for k in config.roles.targets]
    sizes = {name: len(config.model_set_members(name, targets)) for name in config.model_sets}
    assert sizes == {
        "all_models": 12,
        "claude_models": 5,
        "openai_models": 5,
        "opus4_vs_sonnet4": 2,
        "gpt41_vs_mini": 2,
        "o3_vs_o4mini": 2,
    }
    (spec,) = config.specs
    assert (spec.id, spec.version, spec.families) == ("openai-model-spec", "2025-04-11", ["openai"])
    assert config.disagreement.threshold == 1.5
    assert (config.outliers.min_gap, config.outliers.share) == (4, 0.75)


@pytest.mark.skipif(not OPENAI_SPEC.is_file(), reason="../shared/data/openai_model_spec is absent")
def test_the_papers_spec_parses_into_anchored_sections() -> None:
    spec = load_spec(str(OPENAI_SPEC), "openai-model-spec", "2025-04-11")
    assert "assume_best_intentions" in spec.anchors
    assert spec.section("assume_best_intentions").authority == "platform"
    assert len(spec.anchors) > 50
