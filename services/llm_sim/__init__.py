"""The specstress LLM simulator: an offline server speaking the OpenAI, Anthropic and Gemini wire
protocols, whose persona models answer the pipeline's prompts deterministically, with planted
stances that tests can check."""

from services.llm_sim.personas import PERSONAS, planted_positions
from services.llm_sim.server import build_app

__all__ = ["PERSONAS", "build_app", "planted_positions"]
