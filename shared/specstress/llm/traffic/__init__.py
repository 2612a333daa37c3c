"""Provider pacing and money: fleet-wide rate limits, provider pauses, the run budget, costs.

Each module holds one part of the rule a paid call passes before it starts; `store` is their SQL.
"""

from specstress.llm.traffic.accounting import call_cost, observe, stored_answer
from specstress.llm.traffic.admission import Admission
from specstress.llm.traffic.headers import ProviderRoom, Room, parse_room
from specstress.llm.traffic.limits import RateLimiter, estimate_tokens, limit_key

__all__ = [
    "Admission",
    "ProviderRoom",
    "RateLimiter",
    "Room",
    "call_cost",
    "estimate_tokens",
    "limit_key",
    "observe",
    "parse_room",
    "stored_answer",
]
