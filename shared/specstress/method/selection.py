"""Diversity selection (method 2.4, Appendix A): greedy farthest-first k-center with a stop distance.

Vectors are unit-normalised float32 rows, so squared L2 distances come from dot products:
d^2 = 2 - 2 cos. All comparisons are made on squared distances.

**Exact farthest-first.** Start from a seeded random row; repeatedly pick the row farthest from
the rows picked so far; stop when the farthest remaining row is closer than `stop` (that row is
not picked). Ties go to the lowest row index. The result is therefore a `stop`-cover (every row
lies strictly within `stop` of a picked row) and `stop`-separated (each pick lay at least `stop`
from every earlier pick). The textbook version costs one matrix-vector product over all rows per
pick, which reads the whole matrix for each of ~300k picks at 411k rows. This one gives the same
picks with most of the work done as matrix-matrix products:

- picks are buffered in blocks of `BLOCK`; the distances of all rows to a full block are folded
  into the per-row minimum at once (chunked GEMM, bounded memory);
- between folds, the minimum of a row is an upper bound (it can only fall), so rows are visited
  in the order of their bounds and a heap keeps the visited ones. The heap's top is the true
  farthest row once its value has been brought up to date with the buffered picks and no
  unvisited row has a larger bound; otherwise it is refreshed (one small product) and the
  search goes on;
- rows whose distance to the selection has fallen below `stop` can never be picked and need
  nothing more, so they leave the working set.

**Weighted variant.** With weights w (the scenario's disagreement D), the "distance" of a row to
the selection is w * min distance, a pick must reach `stop` (0.8 in the paper) and the run stops
when no row does. A row with w * 2 < stop can never be picked (unit vectors are at most 2
apart). Separation then reads: every pick p lies at least stop / w_p from the picks before it;
cover: every row x lies within stop / w_x of a pick. The first pick is the seeded random row,
whatever its weight, as in the unweighted run.

**Partitioned method.** Rows are split into cells around coarse k-means centres (about n / 32
cells, at most 4096; one Lloyd round on a sample). Each row also joins the "halo" of every
other cell whose Voronoi region it approaches closer than that cell's search radius (the stop
distance, or stop / smallest relevant weight in the weighted case): the distance from a row to
the bisector between its own centre and another lower-bounds its distance to any row of that
other cell, so every pair of rows closer than the radius shares a cell as home or halo. Cells
are then run one after the other with the exact method (the cell of the seeded start first),
each row's starting minimum being its distance to the rows already picked in that cell's halo,
capped at the radius (past which the row is pickable whatever its true distance). The result
keeps both guarantees exactly (a `stop`-cover and `stop`-separated, weighted as above); what it
gives up is the global farthest-first order, so it is a different maximal separated set than
the exact run, of a similar size. Both sets obey the same bounds: covering radius < stop, and
any cover of radius < stop / 2 needs at least as many centres.

**Which one `auto` runs.** Both cost distance computations: the exact method about n^2 / 2 (a
row meets the picks until it is covered, and ~70% of rows end up picked at delta 0.4), the
partitioned one sum(members x (members + halo)) over cells, estimated from one chunk of
sampled rows once the centres are placed. Its small per-cell products cost more per distance,
so `auto` takes the partition only when PARTITION_PENALTY times its count is below the exact
one. Weights from a wide range of D (some near stop / 2) widen every cell's radius towards 2,
so a weighted run rarely partitions. In high
dimensions with broad clusters (sentence embeddings: unrelated texts ~1.3 apart, only
near-duplicates within 0.4) halos are large and the saving is moderate; with well-separated
clusters it is large. bench/kcenter.py records both at 411k x 384.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from specstress.errors import InputError

__all__ = [
    "BLOCK",
    "DEFAULT_DELTA",
    "DEFAULT_WEIGHTED_STOP",
    "PARTITION_PENALTY",
    "PLAN_MIN_ROWS",
    "FloatArray",
    "IndexArray",
    "Method",
    "Selection",
    "select_kcenter",
]

Method = Literal["auto", "exact", "partitioned"]
FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]

DEFAULT_DELTA = 0.4
DEFAULT_WEIGHTED_STOP = 0.8
# `auto` runs the exact method below this many rows (seconds) without weighing the partition
PLAN_MIN_ROWS = 50_000
# Rows per cell of the partitioned method, and a cap on cells (the halo bitmap costs
# cells * n / 8 bytes, the centre gaps cells^2 * 4).
_ROWS_PER_CELL = 32
_MAX_CELLS = 4096
# The cells' small matrix products (and their planning) cost more per distance than the exact
# method's large ones: ~1.2x at 411k x 384 and ~3x at 60k on 2 cores (bench/kcenter.py). `auto`
# partitions only when this many times its estimated distance count is below the exact one's.
PARTITION_PENALTY = 2.0
BLOCK = 1024
_CHUNK_ROWS = 8192
# rows per step of the halo pass: its temporaries are this many rows x cells (a multiple of 8,
# so each step packs into whole bytes of the bitmap)
_HALO_CHUNK_ROWS = 1024
_NORM_TOLERANCE = 1e-3
# float32 distances are off by ~1e-6; halo tests get this much slack so rounding never hides a
# neighbour (a larger halo costs time, never correctness)
_HALO_SLACK = 1e-3
# the Lloyd round that places the centres runs on this many sampled rows per cell
_KMEANS_SAMPLE_PER_CELL = 16


@dataclass(frozen=True)
class Selection:
    """Picked row indices in pick order, and each pick's (weighted) distance to the rows picked
    before it: infinite for the first pick; in the partitioned method, capped at the search
    radius of the pick's cell (nothing nearer than that was picked)."""

    order: IndexArray
    pick_distance: FloatArray
    method: Literal["exact", "partitioned"]


def select_kcenter(
    vectors: FloatArray,
    *,
    stop: float = DEFAULT_DELTA,
    seed: int = 0,
    weights: npt.NDArray[np.floating] | None = None,
    method: Method = "auto",
    cells: int | None = None,
) -> Selection:
    """Greedy farthest-first selection of unit-normalised rows; see the module notes.

    `auto` runs the exact method on fewer than PLAN_MIN_ROWS rows; on more, it places the
    cells, estimates the partition's cost from a sample of rows and partitions only when that
    promises to be cheaper on these rows (see the notes).
    """
    x = _check_vectors(vectors)
    n = x.shape[0]
    w = _check_weights(weights, n)
    if not (math.isfinite(stop) and stop > 0):
        raise InputError(f"selection stop distance must be a positive number, got {stop}")
    if method not in ("auto", "exact", "partitioned"):
        raise InputError(f"unknown selection method {method!r} (auto, exact or partitioned)")
    if cells is not None and cells < 1:
        raise InputError(f"partitioned selection needs at least one cell, got {cells}")
    rng = np.random.default_rng(seed)
    if n == 0:
        return Selection(np.zeros(0, np.int64), np.zeros(0, np.float32), "exact")
    start = int(rng.integers(n))
    if method == "partitioned" or (method == "auto" and n >= PLAN_MIN_ROWS):
        centres = _centres(x, _cell_count(n, cells), rng)
        if method == "partitioned" or (
            PARTITION_PENALTY * _estimated_work(x, w, stop, centres, rng) < n * n / 2
        ):
            plan = _plan(x, w, stop, centres)
            return _partitioned(x, plan, weights=w, stop=stop, start=start)
    order, distance = _run(x, w, np.full(n, np.inf, np.float32), stop, start)
    return Selection(order, distance, "exact")


def _check_vectors(vectors: FloatArray) -> FloatArray:
    x = np.asarray(vectors)
    if x.ndim != 2:
        raise InputError(f"selection needs a 2-D array of vectors, got shape {x.shape}")
    if x.dtype != np.float32:
        raise InputError(f"selection needs float32 vectors, got {x.dtype}")
    x = np.ascontiguousarray(x)
    # checked in chunks so a 411k x 384 matrix costs no full-size temporary
    for begin in range(0, x.shape[0], _CHUNK_ROWS):
        if not np.isfinite(x[begin : begin + _CHUNK_ROWS]).all():
            raise InputError("selection vectors contain NaN or infinite values")
        norms = np.linalg.norm(x[begin : begin + _CHUNK_ROWS], axis=1)
        bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOLERANCE)
        if bad.size:
            row = begin + int(bad[0])
            raise InputError(
                f"selection vectors must be unit-normalised: row {row} has norm {norms[bad[0]]:.4f}"
            )
    return x


def _check_weights(weights: npt.NDArray[np.floating] | None, n: int) -> FloatArray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float32)
    if w.shape != (n,):
        raise InputError(f"selection weights must have one value per vector ({n}), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise InputError("selection weights must be finite and non-negative")
    return w


class _Frontier:
    """The state of one exact farthest-first run over `x` (see the module notes).

    Between folds, rows are visited in the order of their bounds (sorted at the last fold); a
    heap holds the rows visited so far, each with the number of buffered picks its value has
    seen. The heap's top is the farthest row once its value has seen every buffered pick.
    """

    def __init__(
        self, x: FloatArray, weights: FloatArray | None, initial: FloatArray, stop: float
    ) -> None:
        self.x = x
        self.w2 = None if weights is None else weights * weights
        # squared distance of each row to the folded picks (an upper bound for unfolded ones)
        self.mind2 = initial.astype(np.float32) ** 2
        # the same float32 arithmetic as the squared distances it is compared with
        self.stop2 = float(np.float32(stop) * np.float32(stop))
        self.picks = np.empty((BLOCK, x.shape[1]), np.float32)
        self.pending = 0
        self.active: IndexArray = np.arange(x.shape[0], dtype=np.int64)
        self.sorted_idx: IndexArray = self.active
        self.sorted_pri: FloatArray = np.zeros(0, np.float32)
        self.cursor = 0
        # (-value, row, buffered picks seen): heapq pops the largest value, then the lowest row
        self.heap: list[tuple[float, int, int]] = []
        self._resort()

    def priority(self, rows: IndexArray) -> FloatArray:
        m = self.mind2[rows]
        if self.w2 is None:
            return m
        with np.errstate(invalid="ignore"):
            # a zero weight times an unreached (infinite) distance counts as zero
            weighted: FloatArray = np.nan_to_num(self.w2[rows] * m, nan=0.0, posinf=np.inf)
        return weighted

    def _resort(self) -> None:
        pri = self.priority(self.active)
        keep = pri >= self.stop2
        self.active = self.active[keep]
        pri = pri[keep]
        # stable on ascending row ids: equal bounds keep the lowest row first
        order = np.argsort(-pri, kind="stable")
        self.sorted_idx = self.active[order]
        self.sorted_pri = pri[order]
        self.cursor = 0
        self.heap = []

    def fold(self) -> None:
        """Fold the buffered picks into every working row's minimum, then re-sort."""
        if self.pending:
            picks = self.picks[: self.pending]
            for begin in range(0, self.active.size, _CHUNK_ROWS):
                rows = self.active[begin : begin + _CHUNK_ROWS]
                d2 = _min_sq_distance(self.x[rows], picks)
                np.minimum(self.mind2[rows], d2, out=d2)
                self.mind2[rows] = d2
            self.pending = 0
        self._resort()

    def _refresh(self, row: int, seen: int) -> float:
        """The row's value against every buffered pick (it had seen the first `seen`)."""
        cos = self.picks[seen : self.pending] @ self.x[row]
        d2 = max(np.float32(2.0) - np.float32(2.0) * cos.max(), np.float32(0.0))
        self.mind2[row] = min(self.mind2[row], d2)
        if self.w2 is None:
            return float(self.mind2[row])
        return float(self.w2[row] * self.mind2[row])

    def next_pick(self) -> tuple[int, float] | None:
        """The farthest row and its squared (weighted) distance, or None when all are < stop."""
        heap = self.heap
        while True:
            # visit every row whose bound reaches the best value in the heap (ties included,
            # so the lowest row among equal values is in the heap to win)
            while self.cursor < self.sorted_idx.size and (
                not heap or float(self.sorted_pri[self.cursor]) >= -heap[0][0]
            ):
                entry = (-float(self.sorted_pri[self.cursor]), int(self.sorted_idx[self.cursor]), 0)
                heapq.heappush(heap, entry)
                self.cursor += 1
            if not heap or -heap[0][0] < self.stop2:
                return None
            value, row, seen = heap[0]
            if seen == self.pending:
                return row, -value
            heapq.heappop(heap)
            refreshed = self._refresh(row, seen)
            if refreshed >= self.stop2:
                heapq.heappush(heap, (-refreshed, row, self.pending))

    def pick(self, row: int) -> None:
        if self.heap and self.heap[0][1] == row:
            heapq.heappop(self.heap)
        self.mind2[row] = 0.0
        self.picks[self.pending] = self.x[row]
        self.pending += 1
        if self.pending == BLOCK:
            self.fold()


def _min_sq_distance(rows: FloatArray, picks: FloatArray) -> FloatArray:
    """Squared distance of each unit row to its nearest unit pick (2 - 2 cos, clipped at 0)."""
    cos = rows @ picks.T
    d2: FloatArray = np.maximum(2.0 - 2.0 * cos.max(axis=1), 0.0).astype(np.float32, copy=False)
    return d2


def _run(
    x: FloatArray,
    weights: FloatArray | None,
    initial: FloatArray,
    stop: float,
    start: int | None,
) -> tuple[IndexArray, FloatArray]:
    """Exact farthest-first over `x` from `initial` distances, picking `start` first if given."""
    frontier = _Frontier(x, weights, initial, stop)
    order: list[int] = []
    distance: list[float] = []
    if start is not None:
        order.append(start)
        distance.append(float(np.sqrt(frontier.priority(np.array([start]))[0])))
        frontier.pick(start)
        # one pick reaches every row: fold at once so no bound stays infinite
        frontier.fold()
    while (found := frontier.next_pick()) is not None:
        row, pri = found
        order.append(row)
        distance.append(math.sqrt(pri))
        frontier.pick(row)
    return np.asarray(order, np.int64), np.asarray(distance, np.float32)


def _scores(block: FloatArray, centres: FloatArray, half_sq: FloatArray) -> FloatArray:
    """x.c - |c|^2 / 2 per (row, centre): for unit rows |x - c|^2 = 1 - 2 * score, so the
    largest score is the nearest centre and score differences are distance differences."""
    scores: FloatArray = block @ centres.T
    scores -= half_sq[None, :]
    return scores


def _nearest(x: FloatArray, centres: FloatArray) -> tuple[IndexArray, FloatArray]:
    """Each row's nearest centre (lowest index on ties) and its score."""
    half_sq = (centres * centres).sum(axis=1) / 2
    home = np.empty(x.shape[0], np.int64)
    best = np.empty(x.shape[0], np.float32)
    for begin in range(0, x.shape[0], _CHUNK_ROWS):
        scores = _scores(x[begin : begin + _CHUNK_ROWS], centres, half_sq)
        nearest = scores.argmax(axis=1)
        home[begin : begin + nearest.size] = nearest
        best[begin : begin + nearest.size] = scores[np.arange(nearest.size), nearest]
    return home, best


def _centres(x: FloatArray, cells: int, rng: np.random.Generator) -> FloatArray:
    """Seeded sample rows moved by one Lloyd round over a sample: coarse is enough, the halos
    make any partition correct."""
    n = x.shape[0]
    centres = x[np.sort(rng.choice(n, size=cells, replace=False))].copy()
    sample = x[np.sort(rng.choice(n, size=min(n, cells * _KMEANS_SAMPLE_PER_CELL), replace=False))]
    home, _ = _nearest(sample, centres)
    sums = np.zeros_like(centres)
    np.add.at(sums, home, sample)
    counts = np.bincount(home, minlength=cells)
    filled = counts > 0
    centres[filled] = sums[filled] / counts[filled, None].astype(np.float32)
    return centres


def _cell_count(n: int, cells: int | None) -> int:
    return min(n, cells if cells is not None else min(_MAX_CELLS, max(1, n // _ROWS_PER_CELL)))


@dataclass(frozen=True)
class _Plan:
    home: IndexArray
    radius: FloatArray
    # one packed bit per (cell, row): the row is in the cell's halo
    halos: npt.NDArray[np.uint8]


def _plan(x: FloatArray, weights: FloatArray | None, stop: float, centres: FloatArray) -> _Plan:
    home, home_score = _nearest(x, centres)
    radius = _halo_radius(home, weights, stop, centres.shape[0])
    halos, _ = _halo_bitmap(x, centres, home, home_score, radius)
    return _Plan(home, radius, halos)


def _estimated_work(
    x: FloatArray,
    weights: FloatArray | None,
    stop: float,
    centres: FloatArray,
    rng: np.random.Generator,
) -> float:
    """Distance computations of the partitioned method, sum(members x (members + halo)) over
    cells, estimated from one chunk of sampled rows (members and halos scaled up by n / sample;
    count^2 - count is the unbiased square of a sampled count)."""
    n, count = x.shape[0], centres.shape[0]
    rows = np.sort(rng.choice(n, size=min(n, _CHUNK_ROWS), replace=False))
    sample = x[rows]
    home, home_score = _nearest(sample, centres)
    sample_weights = None if weights is None else weights[rows]
    radius = _halo_radius(home, sample_weights, stop, count)
    _, halo = _halo_bitmap(sample, centres, home, home_score, radius)
    members = np.bincount(home, minlength=count).astype(np.float64)
    pairs = (members * members - members).sum() + (members * halo).sum()
    return float((n / rows.size) ** 2 * pairs)


def _halo_radius(
    home: IndexArray, weights: FloatArray | None, stop: float, cells: int
) -> FloatArray:
    """Per cell, how far its rows may need to look: `stop`, or in the weighted case stop / w for
    the smallest weight among its rows that can matter (w * 2 >= stop); 0 for a cell of none.

    Rows with no pick inside this radius start from it as their distance: for every row that can
    matter, weight * radius >= stop, so it is exactly as pickable as with its true distance.
    """
    if weights is None:
        return np.full(cells, stop, np.float32)
    relevant = weights * 2.0 >= stop
    smallest = np.full(cells, np.inf, np.float32)
    np.minimum.at(smallest, home[relevant], weights[relevant])
    with np.errstate(divide="ignore"):
        # a hair over stop / w so float32 rounding cannot make a pickable row look covered
        radius = np.where(
            np.isfinite(smallest),
            np.minimum(2.0, stop / smallest.astype(np.float64) * 1.000001),
            0.0,
        )
    return radius.astype(np.float32)


def _halo_bitmap(
    x: FloatArray,
    centres: FloatArray,
    home: IndexArray,
    home_score: FloatArray,
    radius: FloatArray,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64]]:
    """Per (cell, row), one packed bit: the row lies in another cell and closer than that
    cell's radius to its Voronoi region; and the number of rows in each cell's halo. A bitmap
    keeps memory at cells * n / 8 bytes however many halos a row joins (in high dimensions,
    many).

    Row x (home a) is within r of a point of cell b only if its distance to the bisector of
    centres a and b, (|x - c_b|^2 - |x - c_a|^2) / (2 |c_a - c_b|), is below r; for unit rows
    the numerator is 2 (score_a - score_b).
    """
    cells = centres.shape[0]
    half_sq = (centres * centres).sum(axis=1) / 2
    gap = np.sqrt(
        np.maximum(2 * half_sq[:, None] + 2 * half_sq[None, :] - 2.0 * (centres @ centres.T), 0.0)
    ).astype(np.float32)
    limit = radius + np.float32(_HALO_SLACK)
    bitmap = np.zeros((cells, (x.shape[0] + 7) // 8), np.uint8)
    sizes = np.zeros(cells, np.float64)
    for begin in range(0, x.shape[0], _HALO_CHUNK_ROWS):
        block = x[begin : begin + _HALO_CHUNK_ROWS]
        own = home[begin : begin + block.shape[0]]
        closer = home_score[begin : begin + block.shape[0], None] - _scores(block, centres, half_sq)
        # (a centre that coincides with another gets no rows: argmax keeps the lower index)
        inside = closer < limit[None, :] * gap[own]
        inside[np.arange(block.shape[0]), own] = False
        sizes += inside.sum(axis=0)
        packed = np.packbits(inside.T, axis=1)
        bitmap[:, begin // 8 : begin // 8 + packed.shape[1]] = packed
    return bitmap, sizes


def _partitioned(
    x: FloatArray, plan: _Plan, *, weights: FloatArray | None, stop: float, start: int
) -> Selection:
    n = x.shape[0]
    home, radius, halos = plan.home, plan.radius, plan.halos
    count = radius.size
    by_home = np.argsort(home, kind="stable")
    bounds = np.searchsorted(home[by_home], np.arange(count + 1))
    picked = np.zeros(n, bool)
    orders: list[IndexArray] = []
    distances: list[FloatArray] = []
    first_cell = int(home[start])
    for cell in [first_cell, *(c for c in range(count) if c != first_cell)]:
        members = by_home[bounds[cell] : bounds[cell + 1]]
        if members.size == 0:
            continue
        local = np.ascontiguousarray(x[members])
        if cell == first_cell:
            # nothing is picked yet: the global start goes first
            initial = np.full(members.size, np.inf, np.float32)
            local_start: int | None = int(np.searchsorted(members, start))
        else:
            initial = np.full(members.size, radius[cell], np.float32)
            local_start = None
        in_halo = np.unpackbits(halos[cell], count=n).view(bool)
        neighbours = np.flatnonzero(in_halo & picked)
        for begin in range(0, neighbours.size, _CHUNK_ROWS):
            near = x[neighbours[begin : begin + _CHUNK_ROWS]]
            for row in range(0, members.size, _CHUNK_ROWS):
                part = slice(row, row + _CHUNK_ROWS)
                d2 = _min_sq_distance(local[part], near)
                initial[part] = np.minimum(initial[part], np.sqrt(d2))
        local_weights = None if weights is None else weights[members]
        order, distance = _run(local, local_weights, initial, stop, local_start)
        chosen = members[order]
        picked[chosen] = True
        orders.append(chosen)
        distances.append(distance)
    return Selection(
        np.concatenate(orders) if orders else np.zeros(0, np.int64),
        np.concatenate(distances) if distances else np.zeros(0, np.float32),
        "partitioned",
    )
