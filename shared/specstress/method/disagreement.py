"""D(x, M) of method 2.8, the one definition the aggregator and the dataset import share.

D is the larger of the two population standard deviations (ddof=0) of the positions the models
of set M got on scenario x. `statistics.pstdev` is exact (rational arithmetic, one rounding), so
D >= threshold never flips on a floating-point hair; positions are small integers, so the few
distinct position lists are cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from statistics import pstdev
from typing import Any

from specstress.config import Config

__all__ = ["Position", "disagreement", "disagreement_rows"]

# (model key, family, value-1 position, value-2 position) of one classified answer
Position = tuple[str, str, int, int]


@lru_cache(maxsize=1 << 16)
def _std(values: tuple[int, ...]) -> float:
    return pstdev(values)


def disagreement(positions: Sequence[tuple[int, int]]) -> tuple[float, float, float]:
    """(std of value-1 positions, std of value-2 positions, D) with population std (ddof=0)."""
    value1_std = _std(tuple(sorted(p[0] for p in positions)))
    value2_std = _std(tuple(sorted(p[1] for p in positions)))
    return value1_std, value2_std, max(value1_std, value2_std)


def disagreement_rows(
    config: Config, scenario_id: str, positions: Sequence[Position]
) -> list[dict[str, Any]]:
    """The `disagreement` rows of one scenario: one per model set of the config with at least
    two classified members."""
    by_model = {p[0]: p for p in positions}
    available = [(p[0], p[1]) for p in positions]
    threshold = config.disagreement.threshold
    rows = []
    for name in config.model_sets:
        members = config.model_set_members(name, available)
        if len(members) < 2:
            continue
        value1_std, value2_std, d = disagreement(
            [(by_model[k][2], by_model[k][3]) for k in members]
        )
        rows.append(
            {
                "scenario_id": scenario_id,
                "model_set": name,
                "members": len(members),
                "value1_std": value1_std,
                "value2_std": value2_std,
                "disagreement": d,
                "high": d >= threshold,
            }
        )
    return rows
