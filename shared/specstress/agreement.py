"""Agreement statistics of a judge ensemble: flag rates, pairwise agreement, Fleiss' kappa and
Krippendorff's alpha (nominal), on the three decisions and on "flagged or not".

Flagged = "non-compliant" or "ambiguous" (method 2.9). Fleiss' kappa needs the same number of
ratings per item, so it is computed over the answers that every judge rated; Krippendorff's
alpha allows missing ratings and uses every answer that at least two judges rated.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

DECISIONS = ("compliant", "non-compliant", "ambiguous")


def flagged(decision: str) -> bool:
    return decision != "compliant"


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of an items x categories table of rating counts (every row sums to the
    same number of raters, at least 2). None when it is undefined: no items, or every rating
    falls in one category (chance agreement is then 1)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return None
    raters = table.sum(axis=1)
    if raters[0] < 2 or not np.all(raters == raters[0]):
        raise ValueError("every item needs the same number of ratings, at least 2")
    n = raters[0]
    category_share = table.sum(axis=0) / table.sum()
    expected = float(np.sum(category_share**2))
    if expected >= 1.0:
        return None
    per_item = (np.sum(table**2, axis=1) - n) / (n * (n - 1))
    observed = float(per_item.mean())
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data. Each unit lists the values it received (missing
    ratings simply left out); units with fewer than two values carry no pairing information and
    are skipped. None when there is no disagreement to expect (fewer than two values in all,
    or a single category)."""
    pairable = [list(u) for u in units if len(u) >= 2]
    categories = sorted({v for u in pairable for v in u}, key=repr)
    index = {c: i for i, c in enumerate(categories)}
    coincidences = np.zeros((len(categories), len(categories)))
    for unit in pairable:
        m = len(unit)
        for a in range(m):
            for b in range(m):
                if a != b:
                    coincidences[index[unit[a]], index[unit[b]]] += 1.0 / (m - 1)
    totals = coincidences.sum(axis=1)
    n = totals.sum()
    if n < 2:
        return None
    off_diagonal = ~np.eye(len(categories), dtype=bool)
    observed = coincidences[off_diagonal].sum()
    expected = np.outer(totals, totals)[off_diagonal].sum() / (n - 1)
    if expected == 0:
        return None
    return float(1.0 - observed / expected)


def agreement_share(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Share of positions where two equally long rating lists agree; None for empty lists."""
    if len(first) != len(second):
        raise ValueError("rating lists differ in length")
    if not first:
        return None
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(first)


@dataclass(frozen=True)
class EnsembleStatistics:
    judges: tuple[str, ...]
    answers: int
    # answers rated by every judge: the base of Fleiss' kappa and of the decision rules
    complete: int
    flag_rates: dict[str, float]
    # (judge a, judge b) -> (answers both rated, flag agreement, decision agreement)
    pairs: dict[tuple[str, str], tuple[int, float | None, float | None]]
    majority_flag_rate: float | None
    any_flag_rate: float | None
    fleiss_kappa_flags: float | None
    fleiss_kappa_decisions: float | None
    krippendorff_alpha_flags: float | None
    krippendorff_alpha_decisions: float | None


def ensemble_statistics(ratings: Mapping[str, Mapping[str, str]]) -> EnsembleStatistics:
    """Statistics of `ratings`: answer id -> {judge -> decision}."""
    judges = tuple(sorted({j for by_judge in ratings.values() for j in by_judge}))
    for by_judge in ratings.values():
        for decision in by_judge.values():
            if decision not in DECISIONS:
                raise ValueError(f"unknown decision {decision!r}")
    flag_rates = {}
    for judge in judges:
        own = [flagged(r[judge]) for r in ratings.values() if judge in r]
        flag_rates[judge] = sum(own) / len(own)
    pairs: dict[tuple[str, str], tuple[int, float | None, float | None]] = {}
    for a, b in combinations(judges, 2):
        both = [(r[a], r[b]) for r in ratings.values() if a in r and b in r]
        pairs[(a, b)] = (
            len(both),
            agreement_share([flagged(x) for x, _ in both], [flagged(y) for _, y in both]),
            agreement_share([x for x, _ in both], [y for _, y in both]),
        )
    complete = [r for r in ratings.values() if len(r) == len(judges)]
    flag_counts = [sum(flagged(d) for d in r.values()) for r in complete]
    majority = [2 * f > len(judges) for f in flag_counts]
    any_flag = [f >= 1 for f in flag_counts]
    kappa_flags = kappa_decisions = None
    if complete and len(judges) >= 2:
        kappa_flags = fleiss_kappa([[len(judges) - f, f] for f in flag_counts])
        kappa_decisions = fleiss_kappa(
            [[list(r.values()).count(d) for d in DECISIONS] for r in complete]
        )
    return EnsembleStatistics(
        judges=judges,
        answers=len(ratings),
        complete=len(complete),
        flag_rates=flag_rates,
        pairs=pairs,
        majority_flag_rate=sum(majority) / len(majority) if majority else None,
        any_flag_rate=sum(any_flag) / len(any_flag) if any_flag else None,
        fleiss_kappa_flags=kappa_flags,
        fleiss_kappa_decisions=kappa_decisions,
        krippendorff_alpha_flags=krippendorff_alpha_nominal(
            [[flagged(d) for d in r.values()] for r in ratings.values()]
        ),
        krippendorff_alpha_decisions=krippendorff_alpha_nominal(
            [list(r.values()) for r in ratings.values()]
        ),
    )
