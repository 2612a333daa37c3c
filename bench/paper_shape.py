"""The shape of the paper's study, for benchmarks that synthesise one: its 12 target models by
family, its six model sets and its judges."""

from __future__ import annotations

__all__ = ["FAMILIES", "JUDGES", "MODELS", "SETS"]

FAMILIES = {
    "claude_opus_4": "anthropic",
    "claude_sonnet_4": "anthropic",
    "claude_3_7_sonnet": "anthropic",
    "claude_3_5_sonnet": "anthropic",
    "claude_opus_3": "anthropic",
    "gpt_4_1": "openai",
    "gpt_4_1_mini": "openai",
    "gpt_4o": "openai",
    "o3": "openai",
    "o4_mini": "openai",
    "gemini_2_5_pro": "google",
    "grok_4": "xai",
}
MODELS = list(FAMILIES)
SETS = {
    "all_models": ["*"],
    "claude_models": ["family:anthropic"],
    "openai_models": ["family:openai"],
    "opus4_vs_sonnet4": ["claude_opus_4", "claude_sonnet_4"],
    "gpt41_vs_mini": ["gpt_4_1", "gpt_4_1_mini"],
    "o3_vs_o4mini": ["o3", "o4_mini"],
}
# each judge's lean: how much more often than the others it flags an answer
JUDGES = {"claude_sonnet_4": -0.2, "o3": -0.6, "gemini_2_5_pro": -0.55}
