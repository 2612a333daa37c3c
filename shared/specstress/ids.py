"""Deterministic ids: a hash of an entity's inputs is its primary key, Nats-Msg-Id and cache key.

Redelivered or replayed work therefore finds its earlier result instead of creating a twin.
"""

import hashlib
import json
from typing import Any

__all__ = [
    "advisory_lock_key",
    "pair_id",
    "response_id",
    "scenario_id",
    "spectrum_id",
    "stable_id",
    "verdict_id",
]


def stable_id(kind: str, *parts: Any) -> str:
    """A 32-hex-digit id for `kind` over JSON-serialisable parts (order matters)."""
    payload = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def pair_id(value1: str, value2: str, taxonomy_version: str) -> str:
    return stable_id("pair", value1, value2, taxonomy_version)


def scenario_id(pair: str, variant: str, generator: str, prompt_version: str) -> str:
    return stable_id("scenario", pair, variant, generator, prompt_version)


def response_id(scenario: str, model_key: str, params: dict[str, Any]) -> str:
    return stable_id("response", scenario, model_key, params)


def spectrum_id(pair: str, model_key: str, prompt_version: str) -> str:
    return stable_id("spectrum", pair, model_key, prompt_version)


def verdict_id(response: str, judge: str, spec_id: str, spec_version: str) -> str:
    return stable_id("verdict", response, judge, spec_id, spec_version)


def advisory_lock_key(text_id: str) -> int:
    """A signed 64-bit key for pg_advisory_lock derived from a hex id."""
    return int.from_bytes(bytes.fromhex(text_id[:16]), "big", signed=True)


def release_pair_id(value1: str, value2: str, taxonomy_version: str, generator: str) -> str:
    """A value pair of an imported release: the same two values written up by two generators
    are two pairs there, each with its own three variants."""
    return stable_id("pair", value1, value2, taxonomy_version, generator)
