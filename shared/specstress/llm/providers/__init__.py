"""One module per wire protocol: how a request is written and an answer read.

`openai` (chat completions and compatible servers), `anthropic` (Messages), `gemini`
(generateContent). The gateway picks one by the model's `protocol`.
"""

from specstress.llm.providers.anthropic import AnthropicMessages
from specstress.llm.providers.gemini import GeminiGenerate
from specstress.llm.providers.openai import OpenAIChat

__all__ = ["AnthropicMessages", "GeminiGenerate", "OpenAIChat"]
