"""The gateway's data: what goes to a model and what comes back, whatever the wire protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["REASK_INSTRUCTION", "REASK_PREFIX", "ChatMessage", "ModelOutput", "Usage", "reask"]

# How a re-ask of an answer out of format opens, then ends; the simulator recognises a re-ask
# by this opening, so both ends read it from here.
REASK_PREFIX = "Your previous answer did not follow the required format:"
REASK_INSTRUCTION = "Answer again, in exactly the format asked for above and nothing else."


def reask(reason: str) -> str:
    """The message that shows a model why its answer was refused and asks again."""
    return f"{REASK_PREFIX} {reason}\n{REASK_INSTRUCTION}"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatMessage(_Frozen):
    role: Literal["system", "user", "assistant"]
    content: str
    # The prompt up to and including this message is a prefix shared by many calls (e.g. the
    # spec a judge reads): Anthropic gets a cache breakpoint here; OpenAI and Gemini cache
    # stable prefixes on their own. It does not change the answer, so the cache key ignores it.
    cache: bool = False


class Usage(_Frozen):
    """Token counts as the provider reports them.

    `input_tokens` includes `cached_tokens` (read from a prompt cache) and
    `cache_write_tokens` (written to one), and `output_tokens` includes `reasoning_tokens`
    (OpenAI's convention), so cost counts each token once.
    """

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0


class ModelOutput(_Frozen):
    model_key: str
    text: str
    thinking: str | None
    usage: Usage
    request_hash: str
    # served from the ledger: nothing was paid for this call, so cost_usd is 0
    from_cache: bool
    cost_usd: float
    # the provider's raw reason, e.g. "stop" or "length" (a truncated answer)
    finish_reason: str | None = None
    # fields the gateway had to clean of NUL or invalid Unicode before storing them
    cleaned: tuple[str, ...] = ()
