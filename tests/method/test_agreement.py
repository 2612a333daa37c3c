"""Judge-ensemble statistics against textbook examples and independent implementations
(statsmodels' fleiss_kappa, the krippendorff package), and the aggregator's D against numpy."""

from __future__ import annotations

import math
import random

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from specstress.method.agreement import (
    ensemble_statistics,
    fleiss_kappa,
    krippendorff_alpha_nominal,
)
from specstress.method.disagreement import disagreement

# Fleiss (1971) as worked on in most textbooks: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff, "Computing Krippendorff's alpha-reliability" (2011): 4 observers, 12 units,
# missing values as None; nominal alpha = 0.743.
KRIPPENDORFF_OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_fleiss_kappa_textbook_example() -> None:
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.20993, abs=5e-6)


@pytest.mark.parametrize("seed", range(20))
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    raters = int(rng.integers(2, 8))
    categories = int(rng.integers(2, 5))
    items = int(rng.integers(1, 60))
    # skewed category probabilities, so agreement is above chance sometimes
    table = np.array(
        [
            np.bincount(
                rng.choice(categories, size=raters, p=rng.dirichlet(np.ones(categories) * 0.5)),
                minlength=categories,
            )
            for _ in range(items)
        ]
    )
    expected = float(statsmodels_fleiss_kappa(table, method="fleiss"))
    got = fleiss_kappa(table.tolist())
    if math.isnan(expected):
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_undefined_and_malformed() -> None:
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([[3, 0], [3, 0]]) is None  # one category only: chance agreement is 1
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa([[2, 1], [1, 1]])


def _unit_counts(coders: list[list[int | None]], categories: list[int]) -> list[list[int]]:
    """Units x categories: how many coders gave each unit each value."""
    units = zip(*coders, strict=True)
    return [[[v for v in unit if v is not None].count(c) for c in categories] for unit in units]


def test_krippendorff_alpha_textbook_example() -> None:
    counts = _unit_counts(KRIPPENDORFF_OBSERVERS, [1, 2, 3, 4, 5])
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)


@pytest.mark.parametrize("seed", range(20))
def test_krippendorff_alpha_matches_the_krippendorff_package(seed: int) -> None:
    rng = random.Random(seed)
    coders, items = rng.randint(2, 5), rng.randint(3, 50)
    data: list[list[int | None]] = [
        [rng.choice([None, 0, 1, 1, 2]) if rng.random() < 0.9 else None for _ in range(items)]
        for _ in range(coders)
    ]
    counts = _unit_counts(data, [0, 1, 2])
    pairable = [row for row in counts if sum(row) >= 2]
    if sum(1 for c in range(3) if any(row[c] for row in pairable)) < 2:
        assert krippendorff_alpha_nominal(counts) is None
        return
    reference = krippendorff.alpha(
        reliability_data=np.array([[np.nan if v is None else v for v in c] for c in data]),
        level_of_measurement="nominal",
    )
    assert krippendorff_alpha_nominal(counts) == pytest.approx(reference, abs=1e-12)


def test_weights_count_repeated_rows() -> None:
    table = [[2, 1, 0], [0, 3, 0], [1, 1, 1]]
    repeated = [table[0]] * 4 + [table[1]] * 1 + [table[2]] * 7
    assert fleiss_kappa(table, [4, 1, 7]) == pytest.approx(fleiss_kappa(repeated))
    assert krippendorff_alpha_nominal(table, [4, 1, 7]) == pytest.approx(
        krippendorff_alpha_nominal(repeated)
    )
    with pytest.raises(ValueError, match="weights"):
        fleiss_kappa(table, [1, 2])


def test_ensemble_statistics_on_a_hand_worked_ensemble() -> None:
    # three judges, four answers: (compliant, non-compliant, ambiguous) verdicts per answer
    # r1: n, a, c   r2: n, c, c   r3: c, c, c   r4: n, n (the third judge did not rate it)
    profiles = {(1, 1, 1): 1, (2, 1, 0): 1, (3, 0, 0): 1, (0, 2, 0): 1}
    stats = ensemble_statistics(profiles, judges=3)
    assert (stats.answers, stats.complete) == (4, 3)
    # decision rules over the complete answers: r1 flagged by 2 of 3, r2 by 1, r3 by none
    assert stats.majority_flag_rate == pytest.approx(1 / 3)
    assert stats.any_flag_rate == pytest.approx(2 / 3)
    flag_table = [[1, 2], [2, 1], [3, 0]]
    assert stats.fleiss_kappa_flags == pytest.approx(statsmodels_fleiss_kappa(np.array(flag_table)))
    decision_table = [[1, 1, 1], [2, 1, 0], [3, 0, 0]]
    assert stats.fleiss_kappa_decisions == pytest.approx(
        statsmodels_fleiss_kappa(np.array(decision_table))
    )
    # judges as coders, answers as units; flagged = 1
    assert stats.krippendorff_alpha_flags == pytest.approx(
        krippendorff.alpha(
            reliability_data=np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, np.nan]]),
            level_of_measurement="nominal",
        )
    )
    assert stats.krippendorff_alpha_decisions == pytest.approx(
        krippendorff.alpha(
            reliability_data=np.array([[1, 1, 0, 1], [2, 0, 0, 1], [0, 0, 0, np.nan]]),
            level_of_measurement="nominal",
        )
    )


def test_ensemble_statistics_rejects_impossible_profiles() -> None:
    with pytest.raises(ValueError, match="more verdicts"):
        ensemble_statistics({(2, 2, 0): 1}, judges=3)
    empty = ensemble_statistics({}, judges=3)
    assert (empty.answers, empty.majority_flag_rate, empty.fleiss_kappa_flags) == (0, None, None)


@pytest.mark.parametrize("seed", range(50))
def test_disagreement_is_numpy_population_std(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, 7, size=(int(rng.integers(1, 13)), 2))
    value1_std, value2_std, d = disagreement([(int(a), int(b)) for a, b in positions])
    reference = np.std(positions.astype(float), axis=0, ddof=0)
    assert value1_std == pytest.approx(reference[0], abs=1e-12)
    assert value2_std == pytest.approx(reference[1], abs=1e-12)
    assert d == pytest.approx(reference.max(), abs=1e-12)
