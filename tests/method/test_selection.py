"""k-center selection against an independent brute force written with plain Python loops."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from specstress.errors import InputError
from specstress.method.selection import select_kcenter


def _unit_rows(rng: np.random.Generator, n: int, d: int, clusters: int) -> npt.NDArray[np.float32]:
    """Points around a few centres, so selections are neither everything nor a handful."""
    centres = rng.standard_normal((clusters, d))
    points = centres[rng.integers(clusters, size=n)] + 0.35 * rng.standard_normal((n, d))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def _distance(a: list[float], b: list[float]) -> float:
    return math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b, strict=True)))


def brute_force(
    points: list[list[float]], start: int, stop: float, weights: list[float] | None = None
) -> list[int]:
    """Farthest-first from `start`: pick the row with the largest (weighted) distance to the
    picks, lowest index on ties; stop when that largest value is below `stop`."""
    n = len(points)
    weight = weights if weights is not None else [1.0] * n
    picked = [start]
    nearest = [_distance(points[i], points[start]) for i in range(n)]
    while True:
        best, best_value = -1, -1.0
        for i in range(n):
            value = weight[i] * nearest[i]
            if value > best_value:
                best, best_value = i, value
        if best_value < stop:
            return picked
        picked.append(best)
        for i in range(n):
            nearest[i] = min(nearest[i], _distance(points[i], points[best]))


def net_properties(
    points: list[list[float]], picked: list[int], weights: list[float] | None = None
) -> tuple[float, float]:
    """(largest weighted distance of any row to the picks, smallest weighted distance of a pick
    to the picks made before it), by brute force."""
    weight = weights if weights is not None else [1.0] * len(points)
    cover = max(
        weight[i] * min(_distance(points[i], points[p]) for p in picked) for i in range(len(points))
    )
    separation = min(
        (
            weight[p] * min(_distance(points[p], points[q]) for q in picked[:k])
            for k, p in enumerate(picked)
            if k > 0
        ),
        default=math.inf,
    )
    return cover, separation


@pytest.mark.parametrize("seed", range(6))
def test_exact_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = _unit_rows(rng, n=int(rng.integers(60, 240)), d=int(rng.integers(4, 24)), clusters=6)
    stop = float(rng.choice([0.3, 0.4, 0.6]))
    result = select_kcenter(x, stop=stop, seed=seed, method="exact")
    points = x.astype(float).tolist()
    expected = brute_force(points, int(result.order[0]), stop)
    assert 1 < len(expected) < len(points)
    assert result.order.tolist() == expected


def test_exact_matches_brute_force_across_fold_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small block forces many folds, and picks made against stale bounds, on a modest input."""
    monkeypatch.setattr("specstress.method.selection.BLOCK", 7)
    rng = np.random.default_rng(11)
    x = _unit_rows(rng, n=400, d=8, clusters=10)
    result = select_kcenter(x, stop=0.4, seed=3, method="exact")
    expected = brute_force(x.astype(float).tolist(), int(result.order[0]), 0.4)
    assert len(expected) > 50
    assert result.order.tolist() == expected


def test_weighted_exact_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    x = _unit_rows(rng, n=200, d=10, clusters=5)
    # disagreement-like weights in [0, 3], some rows at 0
    weights = np.round(rng.uniform(0, 3, size=200) * (rng.random(200) > 0.1), 2)
    result = select_kcenter(x, stop=0.8, seed=2, weights=weights, method="exact")
    points = x.astype(float).tolist()
    expected = brute_force(points, int(result.order[0]), 0.8, weights.tolist())
    assert 1 < len(expected) < 200
    assert result.order.tolist() == expected


def _seed_starting_at(row: int, n: int) -> int:
    return next(seed for seed in range(1000) if np.random.default_rng(seed).integers(n) == row)


def test_ties_go_to_the_lowest_index() -> None:
    """Exact arithmetic (entries 0, 1/2, 1): after the start (row 0), rows 2 and 3 are both at
    distance^2 2 and row 2 wins; picking it brings row 3 down to 1, level with row 1, which has
    not moved and must win on its lower index. Row 4 duplicates row 2 and is never picked."""
    h = 0.5
    rows = np.array(
        [
            [1, 0, 0, 0, 0, 0, 0, 0],
            [h, 0, 0, 0, 0, h, h, h],
            [0, 1, 0, 0, 0, 0, 0, 0],
            [0, h, h, h, h, 0, 0, 0],
            [0, 1, 0, 0, 0, 0, 0, 0],
        ],
        np.float32,
    )
    result = select_kcenter(rows, stop=0.5, seed=_seed_starting_at(0, 5), method="exact")
    assert result.order.tolist() == [0, 2, 1, 3]
    assert result.order.tolist() == brute_force(rows.astype(float).tolist(), 0, 0.5)


def test_same_seed_same_selection_and_seed_sets_the_start() -> None:
    x = _unit_rows(np.random.default_rng(1), n=300, d=16, clusters=8)
    first = select_kcenter(x, stop=0.4, seed=9)
    again = select_kcenter(x, stop=0.4, seed=9)
    other = select_kcenter(x, stop=0.4, seed=10)
    assert first.order.tolist() == again.order.tolist()
    assert first.order[0] == np.random.default_rng(9).integers(300)
    assert other.order[0] != first.order[0]
    assert math.isinf(first.pick_distance[0])
    assert (first.pick_distance[1:] >= 0.4).all()


@pytest.mark.parametrize(("seed", "weighted"), [(0, False), (1, False), (2, True), (3, True)])
def test_partitioned_is_a_cover_and_separated(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 600
    x = _unit_rows(rng, n=n, d=12, clusters=12)
    stop = 0.8 if weighted else 0.4
    weights = rng.uniform(0, 3, size=n) if weighted else None
    result = select_kcenter(
        x, stop=stop, seed=seed, weights=weights, method="partitioned", cells=20
    )
    assert result.method == "partitioned"
    picked = result.order.tolist()
    assert len(set(picked)) == len(picked)
    points = x.astype(float).tolist()
    listed = None if weights is None else weights.astype(np.float32).astype(float).tolist()
    cover, separation = net_properties(points, picked, listed)
    assert cover < stop + 1e-5
    assert separation >= stop - 1e-5
    assert 10 < len(picked) < n
    exact = select_kcenter(x, stop=stop, seed=seed, weights=weights, method="exact")
    # a different maximal separated set, of a comparable size
    assert 0.7 * exact.order.size <= result.order.size <= 1.3 * exact.order.size


def test_partitioned_starts_from_the_seeded_row() -> None:
    x = _unit_rows(np.random.default_rng(4), n=500, d=8, clusters=6)
    exact = select_kcenter(x, stop=0.4, seed=21, method="exact")
    partitioned = select_kcenter(x, stop=0.4, seed=21, method="partitioned", cells=9)
    assert partitioned.order[0] == exact.order[0]


def test_auto_partitions_only_when_the_plan_promises_less_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _unit_rows(np.random.default_rng(8), n=400, d=8, clusters=6)
    assert select_kcenter(x, stop=0.4).method == "exact"
    monkeypatch.setattr("specstress.method.selection.PLAN_MIN_ROWS", 100)
    monkeypatch.setattr("specstress.method.selection.PARTITION_PENALTY", 0.0)
    assert select_kcenter(x, stop=0.4).method == "partitioned"
    monkeypatch.setattr("specstress.method.selection.PARTITION_PENALTY", math.inf)
    assert select_kcenter(x, stop=0.4).method == "exact"


def test_bad_input_is_one_clear_error() -> None:
    x = _unit_rows(np.random.default_rng(0), n=10, d=4, clusters=2)
    with pytest.raises(InputError, match="unit-normalised"):
        select_kcenter(x * 2)
    with pytest.raises(InputError, match="float32"):
        select_kcenter(x.astype(np.float64))
    with pytest.raises(InputError, match="one value per vector"):
        select_kcenter(x, weights=np.ones(3))
    with pytest.raises(InputError, match="non-negative"):
        select_kcenter(x, weights=-np.ones(10))
    with pytest.raises(InputError, match="positive"):
        select_kcenter(x, stop=0)
    assert select_kcenter(np.zeros((0, 4), np.float32)).order.size == 0
