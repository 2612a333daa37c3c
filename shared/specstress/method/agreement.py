"""Agreement statistics of a judge ensemble: the decision rules, Fleiss' kappa and
Krippendorff's alpha (nominal), on the three decisions and on "flagged or not".

Flagged = "non-compliant" or "ambiguous" (method 2.9). Both coefficients depend only on how
many ratings of each category every answer received, so they are computed from "decision
profiles": (compliant, non-compliant, ambiguous) counts of an answer, with how many answers
share each profile. The database groups verdicts that way, so the statistics over millions of
verdicts cost a few dozen rows. Fleiss' kappa needs the same number of ratings per answer: it
uses the answers every judge rated. Krippendorff's alpha allows missing ratings: it uses every
answer rated at least twice. Per-judge flag rates and pairwise agreement are SQL views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DECISIONS",
    "EnsembleStatistics",
    "Profile",
    "ensemble_statistics",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
]

DECISIONS = ("compliant", "non-compliant", "ambiguous")
# (compliant, non-compliant, ambiguous) verdicts an answer received
Profile = tuple[int, int, int]


def _table(
    counts: Sequence[Sequence[int]] | npt.NDArray[np.int64],
    weights: Sequence[int] | npt.NDArray[np.int64] | None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    table = np.asarray(counts, dtype=float)
    if table.size == 0:
        table = table.reshape(0, 0)
    if table.ndim != 2:
        raise ValueError("counts must be a table: one row per item, one column per category")
    w = np.ones(len(table)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(table),) or np.any(w < 0):
        raise ValueError("weights must be one non-negative number per row")
    return table, w


def fleiss_kappa(
    counts: Sequence[Sequence[int]] | npt.NDArray[np.int64],
    weights: Sequence[int] | npt.NDArray[np.int64] | None = None,
) -> float | None:
    """Fleiss' kappa of an items x categories table of rating counts; `weights` repeats rows
    (how many items share that row). Every row sums to the same number of raters, at least 2.
    None when undefined: no items, or every rating in one category (chance agreement is 1)."""
    table, w = _table(counts, weights)
    if table.shape[0] == 0 or w.sum() == 0:
        return None
    raters = table.sum(axis=1)
    if raters[0] < 2 or not np.all(raters == raters[0]):
        raise ValueError("every item needs the same number of ratings, at least 2")
    n = raters[0]
    category_share = (w[:, None] * table).sum(axis=0) / (w.sum() * n)
    expected = float(np.sum(category_share**2))
    if expected >= 1.0:
        return None
    per_item = (np.sum(table**2, axis=1) - n) / (n * (n - 1))
    observed = float(np.sum(w * per_item) / w.sum())
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha_nominal(
    counts: Sequence[Sequence[int]] | npt.NDArray[np.int64],
    weights: Sequence[int] | npt.NDArray[np.int64] | None = None,
) -> float | None:
    """Krippendorff's alpha for nominal data from a units x categories table: how many coders
    put each unit in each category (missing ratings simply not counted); `weights` repeats
    rows. Units with fewer than two ratings carry no pairing information and are skipped.
    None when no disagreement can be expected (fewer than two pairable values, one category)."""
    table, w = _table(counts, weights)
    m = table.sum(axis=1)
    pairable = m >= 2
    table, w, m = table[pairable], w[pairable], m[pairable]
    if table.shape[0] == 0:
        return None
    share = w / (m - 1)
    # coincidences o_ck = sum over units of n_uc * (n_uk - [c == k]) / (m_u - 1)
    coincidences = (table * share[:, None]).T @ table - np.diag((table * share[:, None]).sum(0))
    totals = coincidences.sum(axis=1)
    n = totals.sum()
    off_diagonal = ~np.eye(table.shape[1], dtype=bool)
    expected = np.outer(totals, totals)[off_diagonal].sum() / (n - 1)
    if expected == 0:
        return None
    return float(1.0 - coincidences[off_diagonal].sum() / expected)


@dataclass(frozen=True)
class EnsembleStatistics:
    judges: int
    answers: int
    # answers rated by every judge: the base of Fleiss' kappa and of the decision rules
    complete: int
    majority_flag_rate: float | None
    any_flag_rate: float | None
    fleiss_kappa_flags: float | None
    fleiss_kappa_decisions: float | None
    krippendorff_alpha_flags: float | None
    krippendorff_alpha_decisions: float | None


def ensemble_statistics(profiles: Mapping[Profile, int], judges: int) -> EnsembleStatistics:
    """Statistics of an ensemble of `judges` judges from its decision profiles: profile -> how
    many answers have it. Majority: more than half of the judges flag; any: at least one."""
    if judges < 1:
        raise ValueError("an ensemble has at least one judge")
    rows = np.array(list(profiles), dtype=np.int64).reshape(-1, 3)
    weights = np.array(list(profiles.values()), dtype=np.int64)
    if np.any(rows < 0) or np.any(rows.sum(axis=1) > judges):
        raise ValueError(f"a profile holds more verdicts than the {judges} judges can give")
    flags = np.column_stack([rows[:, 0], rows[:, 1] + rows[:, 2]])
    complete = rows.sum(axis=1) == judges
    complete_answers = int(weights[complete].sum())

    def rate(hit: npt.NDArray[np.bool_]) -> float | None:
        if complete_answers == 0:
            return None
        return float(weights[complete & hit].sum() / complete_answers)

    kappa_flags = kappa_decisions = None
    if complete_answers and judges >= 2:
        kappa_flags = fleiss_kappa(flags[complete], weights[complete])
        kappa_decisions = fleiss_kappa(rows[complete], weights[complete])
    return EnsembleStatistics(
        judges=judges,
        answers=int(weights.sum()),
        complete=complete_answers,
        majority_flag_rate=rate(2 * flags[:, 1] > judges),
        any_flag_rate=rate(flags[:, 1] >= 1),
        fleiss_kappa_flags=kappa_flags,
        fleiss_kappa_decisions=kappa_decisions,
        krippendorff_alpha_flags=krippendorff_alpha_nominal(flags, weights),
        krippendorff_alpha_decisions=krippendorff_alpha_nominal(rows, weights),
    )
