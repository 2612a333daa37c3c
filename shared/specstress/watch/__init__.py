"""The new-model watch: provider listings, rules, the discovery store, cost estimates,
backfill completeness and release comparisons."""

from specstress.watch.compare import Comparison, build_comparison, compare
from specstress.watch.complete import backfill_complete, settled
from specstress.watch.entries import TargetState, resolve_model, target_state
from specstress.watch.estimate import Estimate, estimate_backfill
from specstress.watch.facts import Facts, GaveUp, load_facts
from specstress.watch.rules import entry_for, matches, model_key_for, pick_rule
from specstress.watch.watcher import Leadership, Watcher, next_wait, register_discovered

__all__ = [
    "Comparison",
    "Estimate",
    "Facts",
    "GaveUp",
    "Leadership",
    "TargetState",
    "Watcher",
    "backfill_complete",
    "build_comparison",
    "compare",
    "entry_for",
    "estimate_backfill",
    "load_facts",
    "matches",
    "model_key_for",
    "next_wait",
    "pick_rule",
    "register_discovered",
    "resolve_model",
    "settled",
    "target_state",
]
