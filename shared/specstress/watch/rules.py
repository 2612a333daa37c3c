"""What a watched provider's rules make of a listed model id: which rule, which key, which
entry (a ModelConfig built from the rule's template)."""

from __future__ import annotations

import fnmatch
import re

from specstress.config import Config, ModelConfig, Prices, WatchProvider, WatchRule
from specstress.errors import InputError

__all__ = [
    "KEY_LENGTH",
    "configured_key",
    "entry_for",
    "matches",
    "model_key_for",
    "pick_rule",
    "price_for",
]

_NOT_KEY = re.compile(r"[^a-z0-9_\-]+")
KEY_LENGTH = 64


def matches(pattern: str, model_id: str) -> bool:
    """A glob matches the whole id (case-sensitive, as ids are); `re:` patterns search it."""
    if pattern.startswith("re:"):
        return re.search(pattern[3:], model_id) is not None
    return fnmatch.fnmatchcase(model_id, pattern)


def pick_rule(provider: WatchProvider, model_id: str) -> WatchRule | None:
    """The first rule that includes the id and does not exclude it."""
    for rule in provider.rules:
        if any(matches(p, model_id) for p in rule.include) and not any(
            matches(p, model_id) for p in rule.exclude
        ):
            return rule
    return None


def model_key_for(rule: WatchRule, model_id: str) -> str:
    """The target key of a discovered id: the rule's prefix and the id in the key alphabet."""
    slug = _NOT_KEY.sub("-", model_id.lower()).strip("-_")
    key = f"{rule.key_prefix}{slug}"[:KEY_LENGTH].rstrip("-_")
    if not key or not key[0].isalnum():
        raise InputError(f"model id {model_id!r} gives no usable model key")
    return key


def price_for(config: Config, table: str, model_id: str) -> Prices | None:
    """The first entry of a price table whose pattern matches the id."""
    for pattern, prices in config.watch.price_tables[table].items():
        if matches(pattern, model_id):
            return prices
    return None


def entry_for(
    config: Config, provider: WatchProvider, rule: WatchRule, model_id: str
) -> ModelConfig:
    """The model entry a discovered id gets from its rule's template. A price table with no
    line for the id leaves the model unpriced (zero), which the estimate shows."""
    template = rule.template
    prices = template.prices
    if template.price_table is not None:
        prices = price_for(config, template.price_table, model_id)
    fields = template.model_dump(exclude={"prices", "price_table"}, exclude_none=True)
    return ModelConfig.model_validate(
        {
            **fields,
            "key": model_key_for(rule, model_id),
            "family": rule.family,
            "vendor": rule.vendor,
            "protocol": provider.protocol,
            "base_url": provider.base_url,
            "model_id": model_id,
            "api_key_env": provider.api_key_env,
            "prices": (prices or Prices()).model_dump(),
            "simulated": provider.simulated,
        }
    )


def configured_key(config: Config, provider: WatchProvider, model_id: str) -> str | None:
    """The key of the config file's model at this account with this id, if there is one."""
    base = provider.base_url.rstrip("/")
    for model in config.models:
        if model.model_id == model_id and model.base_url.rstrip("/") == base:
            return model.key
    return None
