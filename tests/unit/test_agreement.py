"""Judge-ensemble statistics against textbook examples and independent implementations
(statsmodels' fleiss_kappa, the krippendorff package), and the aggregator's D against numpy."""

from __future__ import annotations

import math
import random

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from services.aggregator.app import disagreement
from specstress.agreement import (
    DECISIONS,
    agreement_share,
    ensemble_statistics,
    fleiss_kappa,
    krippendorff_alpha_nominal,
)

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


def test_krippendorff_alpha_textbook_example() -> None:
    units = [
        [observer[u] for observer in KRIPPENDORFF_OBSERVERS if observer[u] is not None]
        for u in range(12)
    ]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


@pytest.mark.parametrize("seed", range(20))
def test_krippendorff_alpha_matches_the_krippendorff_package(seed: int) -> None:
    rng = random.Random(seed)
    coders, items = rng.randint(2, 5), rng.randint(3, 50)
    data = [
        [rng.choice([None, 0, 1, 1, 2]) if rng.random() < 0.9 else None for _ in range(items)]
        for _ in range(coders)
    ]
    units = [[c[u] for c in data if c[u] is not None] for u in range(items)]
    pairable = [u for u in units if len(u) >= 2]
    if len({v for u in pairable for v in u}) < 2:
        assert krippendorff_alpha_nominal(units) is None
        return
    reference = krippendorff.alpha(
        reliability_data=np.array([[np.nan if v is None else v for v in c] for c in data]),
        level_of_measurement="nominal",
    )
    assert krippendorff_alpha_nominal(units) == pytest.approx(reference, abs=1e-12)


def test_pairwise_agreement_by_hand() -> None:
    assert agreement_share([True, True, False, False], [True, False, False, True]) == 0.5
    assert agreement_share([], []) is None
    with pytest.raises(ValueError):
        agreement_share([True], [])


def test_ensemble_statistics_on_a_hand_worked_ensemble() -> None:
    # four answers, three judges; the last answer was rated by two judges only
    c, n, a = DECISIONS
    ratings = {
        "r1": {"x": n, "y": a, "z": c},
        "r2": {"x": n, "y": c, "z": c},
        "r3": {"x": c, "y": c, "z": c},
        "r4": {"x": n, "y": n},
    }
    stats = ensemble_statistics(ratings)
    assert stats.judges == ("x", "y", "z")
    assert (stats.answers, stats.complete) == (4, 3)
    assert stats.flag_rates == {"x": 0.75, "y": 0.5, "z": 0.0}
    # x,y flagged-or-not: r1 agree, r2 differ, r3 agree, r4 agree; exact decision: r3, r4
    assert stats.pairs[("x", "y")] == (4, 0.75, 0.5)
    assert stats.pairs[("x", "z")] == pytest.approx((3, 1 / 3, 1 / 3))
    assert stats.pairs[("y", "z")] == pytest.approx((3, 2 / 3, 2 / 3))
    # decision rules over the complete answers: r1 flagged by 2 of 3, r2 by 1, r3 by none
    assert stats.majority_flag_rate == pytest.approx(1 / 3)
    assert stats.any_flag_rate == pytest.approx(2 / 3)
    flag_table = [[1, 2], [2, 1], [3, 0]]
    assert stats.fleiss_kappa_flags == pytest.approx(statsmodels_fleiss_kappa(np.array(flag_table)))
    decision_table = [[1, 1, 1], [2, 1, 0], [3, 0, 0]]
    assert stats.fleiss_kappa_decisions == pytest.approx(
        statsmodels_fleiss_kappa(np.array(decision_table))
    )
    assert stats.krippendorff_alpha_flags == pytest.approx(
        krippendorff.alpha(
            reliability_data=np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, np.nan]]),
            level_of_measurement="nominal",
        )
    )


def test_ensemble_statistics_rejects_unknown_decisions() -> None:
    with pytest.raises(ValueError, match="unknown decision"):
        ensemble_statistics({"r1": {"x": "fine"}})


@pytest.mark.parametrize("seed", range(50))
def test_disagreement_is_numpy_population_std(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, 7, size=(int(rng.integers(1, 13)), 2))
    value1_std, value2_std, d = disagreement([(int(a), int(b)) for a, b in positions])
    reference = np.std(positions.astype(float), axis=0, ddof=0)
    assert value1_std == pytest.approx(reference[0], abs=1e-12)
    assert value2_std == pytest.approx(reference[1], abs=1e-12)
    assert d == pytest.approx(reference.max(), abs=1e-12)
