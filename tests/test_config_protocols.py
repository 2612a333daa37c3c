"""Model config per wire protocol: reasoning settings, reserved params, real-provider studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from specstress.config import (
    AnthropicThinking,
    GeminiThinking,
    ModelConfig,
    OpenAIReasoning,
    load_config,
)
from specstress.errors import InputError

ANTHROPIC = "https://api.anthropic.com"
OPENAI = "https://api.openai.com/v1"
GEMINI = "https://generativelanguage.googleapis.com"
XAI = "https://api.x.ai/v1"

# The paper's twelve targets on their real providers, under the dataset's model keys.
PAPER_MODELS: list[dict[str, Any]] = [
    {"key": "claude_opus_4", "family": "claude", "protocol": "anthropic", "base_url": ANTHROPIC,
     "model_id": "claude-opus-4-20250514", "api_key_env": "ANTHROPIC_API_KEY",
     "reasoning": {"budget_tokens": 8000}, "params": {"max_tokens": 16000},
     "prices": {"input_per_mtok": 15, "output_per_mtok": 75, "cached_input_per_mtok": 1.5,
                "cache_write_input_per_mtok": 18.75}},
    {"key": "claude_sonnet_4", "family": "claude", "protocol": "anthropic", "base_url": ANTHROPIC,
     "model_id": "claude-sonnet-4-20250514", "api_key_env": "ANTHROPIC_API_KEY"},
    {"key": "claude_3_7_sonnet", "family": "claude", "protocol": "anthropic",
     "base_url": ANTHROPIC, "model_id": "claude-3-7-sonnet-20250219",
     "api_key_env": "ANTHROPIC_API_KEY", "reasoning": {"budget_tokens": 4000}},
    {"key": "claude_3_5_sonnet", "family": "claude", "protocol": "anthropic",
     "base_url": ANTHROPIC, "model_id": "claude-3-5-sonnet-20241022",
     "api_key_env": "ANTHROPIC_API_KEY", "params": {"temperature": 1.0}},
    {"key": "claude_opus_3", "family": "claude", "protocol": "anthropic", "base_url": ANTHROPIC,
     "model_id": "claude-3-opus-20240229", "api_key_env": "ANTHROPIC_API_KEY"},
    {"key": "gpt_4_1", "family": "openai", "base_url": OPENAI, "model_id": "gpt-4.1-2025-04-14",
     "api_key_env": "OPENAI_API_KEY", "params": {"temperature": 1.0}},
    {"key": "gpt_4_1_mini", "family": "openai", "base_url": OPENAI,
     "model_id": "gpt-4.1-mini-2025-04-14", "api_key_env": "OPENAI_API_KEY"},
    {"key": "gpt_4o", "family": "openai", "base_url": OPENAI, "model_id": "gpt-4o-2024-11-20",
     "api_key_env": "OPENAI_API_KEY"},
    {"key": "o3", "family": "openai", "base_url": OPENAI, "model_id": "o3-2025-04-16",
     "api_key_env": "OPENAI_API_KEY", "reasoning": {"effort": "medium"},
     "params": {"max_completion_tokens": 16000}},
    {"key": "o4_mini", "family": "openai", "base_url": OPENAI, "model_id": "o4-mini-2025-04-16",
     "api_key_env": "OPENAI_API_KEY", "reasoning": {"effort": "medium"}},
    {"key": "gemini_2_5_pro", "family": "gemini", "protocol": "gemini", "base_url": GEMINI,
     "model_id": "gemini-2.5-pro", "api_key_env": "GEMINI_API_KEY",
     "reasoning": {"budget_tokens": -1, "include_thoughts": True},
     "params": {"temperature": 1.0, "maxOutputTokens": 32768}},
    {"key": "grok_4", "family": "xai", "base_url": XAI, "model_id": "grok-4-0709",
     "api_key_env": "XAI_API_KEY"},
]  # fmt: skip


def _study(tmp_path: Path, models: list[dict[str, Any]]) -> Path:
    keys = [m["key"] for m in models]
    data = {
        "models": models,
        "roles": {
            "generators": [{"model": "claude_opus_4"}, {"model": "o3"}],
            "targets": keys,
            "spectrum": "claude_opus_4",
            "classifier": "claude_sonnet_4",
            "judges": ["claude_sonnet_4", "o3", "gemini_2_5_pro"],
        },
        "model_sets": {"all": ["*"], "claude": ["family:claude"], "openai": ["family:openai"]},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_papers_twelve_models_on_real_providers(tmp_path: Path) -> None:
    config = load_config(_study(tmp_path, PAPER_MODELS))
    assert len(config.roles.targets) == 12
    assert {m.protocol for m in config.models} == {"openai", "anthropic", "gemini"}
    opus = config.model("claude_opus_4")
    assert opus.reasoning == AnthropicThinking(budget_tokens=8000)
    assert opus.max_output_tokens() == 16000
    assert config.model("o3").reasoning == OpenAIReasoning(effort="medium")
    gemini = config.model("gemini_2_5_pro")
    assert gemini.reasoning == GeminiThinking(budget_tokens=-1, include_thoughts=True)
    assert config.model("claude_3_7_sonnet").max_output_tokens() == 4000 + 8192
    assert config.model("claude_sonnet_4").max_output_tokens() == 8192
    # what a response records as its sampling settings
    assert config.model("o3").recorded_params() == {
        "max_completion_tokens": 16000,
        "reasoning": {"effort": "medium"},
    }
    assert config.model("gpt_4o").recorded_params() == {}


def _one(tmp_path: Path, **changes: Any) -> Path:
    """The study with its first model (Claude Opus 4, thinking) changed."""
    return _study(tmp_path, [{**PAPER_MODELS[0], **changes}, *PAPER_MODELS[1:]])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": "cohere"}, r"models\.0\.protocol"),
        ({"reasoning": {"effort": "high"}}, r"models\.0\.reasoning\.anthropic\.budget_tokens"),
        ({"reasoning": {"budget_tokens": 512}}, r"budget_tokens: Input should be greater"),
        ({"reasoning": {"budget_tokens": 4000, "protocol": "openai"}}, r"do not set `protocol`"),
        ({"params": {"max_tokens": 4000}}, r"max_tokens must exceed reasoning\.budget_tokens"),
        ({"params": {"max_tokens": "lots"}}, r"max_tokens must be a positive integer"),
        ({"params": {"temperature": 0.0, "max_tokens": 16000}}, r"neither temperature nor top_k"),
        ({"params": {"thinking": {"type": "enabled"}}}, r"params: thinking set by specstress"),
        ({"params": {"stream": True}}, r"params: stream set by specstress"),
    ],
)
def test_anthropic_settings_are_checked(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load_config(_one(tmp_path, **changes))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"reasoning": {"effort": "extreme"}}, r"reasoning\.openai\.effort"),
        ({"params": {"reasoning_effort": "high"}}, r"params: reasoning_effort set by specstress"),
        ({"params": {"response_format": {"type": "json_object"}}}, r"response_format"),
        ({"protocol": "gemini", "reasoning": {"budget_tokens": 100, "level": "low"}}, r"not both"),
        ({"protocol": "gemini", "reasoning": {"budget_tokens": -2}}, r"budget_tokens"),
        ({"protocol": "gemini", "params": {"responseSchema": {}}}, r"responseSchema"),
    ],
)  # fmt: skip
def test_openai_and_gemini_settings_are_checked(model: dict[str, Any], message: str) -> None:
    fields = {"key": "m", "family": "f", "base_url": OPENAI, "model_id": "x", **model}
    with pytest.raises(ValueError, match=message):
        ModelConfig.model_validate(fields)


def test_defaults_keep_older_configs_valid() -> None:
    model = ModelConfig(key="m", family="f", base_url=OPENAI, model_id="x")
    assert (model.protocol, model.reasoning, model.structured_output) == ("openai", None, True)
    assert model.prices.cache_write_input_per_mtok is None
