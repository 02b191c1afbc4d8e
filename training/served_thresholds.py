"""Serving thresholds per depth, and per leaf shrunk to its depth's, for a precision target.

The served category is the deepest category on the path to the best leaf whose
calibrated score (its subtree's probability) reaches *its* threshold. One
threshold for every category (``thresholds.choose_served_threshold``) keeps the
promise but spends it badly: categories and depths differ in how far their
scores can be trusted. Here, on held-out (cross-fitted) predictions:

1. **Per depth.** Start from the single threshold; move one depth's threshold
   at a time (coordinate ascent) while the served precision's Wilson lower
   bound still reaches the target and more products are answered at the leaf
   (then: more are served at all).
2. **Per leaf, shrunk to its depth's.** Each leaf's own best cut trades leaf
   answers against precision with one price ``mu`` for every leaf (a Lagrange
   multiplier); it is shrunk towards the depth threshold with weight
   ``n / (n + shrinkage)`` (``n``: the leaf's held-out products), so a leaf with
   few products keeps about its depth's threshold. Of the prices tried, the one
   answering most products at the leaf while the lower bound still reaches the
   target wins.
3. **Cross-checked.** The shrinkage is chosen by cross-fitting the whole
   choice within the held-out rows (choose on the other folds, serve the
   fold): the smallest shrinkage whose served precision on rows the thresholds
   never saw still reaches the target. Those cross-checked figures are what
   the metadata reports as the promise on unseen products.

Everything works on any model's calibrated scores: a ``thresholds.PathTable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.thresholds import (
    NEVER,
    WILSON_Z,
    PathTable,
    ServedPoint,
    choose_served_threshold,
    wilson_lower,
)
from triton_models.categoriser.hierarchy import LabelSpace

SHRINKAGE_CHOICES = (10.0, 25.0, 60.0)  # pseudo-products of the depth threshold per leaf
PRICES = tuple(float(p) for p in np.geomspace(0.3, 300.0, 20))
CHECK_FOLDS = 3
DEPTH_GRID = 60  # candidate thresholds per depth (score quantiles)
DEPTH_ROUNDS = 3
# No category is served on less than half of the probability mass, whatever the held-out rows
# say: with rule labels that copy a feed field every cut looks right, and a cut at 0 would
# serve a product its in-domain factor zeroed (nothing like the training data).
MIN_THRESHOLD = 0.5


@dataclass(frozen=True)
class ServedThresholds:
    thresholds: NDArray[Any]  # float32 [labels]: what ScoringParams.thresholds serves
    single: float  # the one threshold for every category the search started from
    by_depth: dict[int, float]  # level → threshold
    shrinkage: float | None  # None: per depth only
    own_thresholds: int  # leaves with a threshold of their own
    held_out: ServedPoint  # these thresholds on the rows they were chosen on
    cross_checked: ServedPoint | None  # chosen without each fold, served on it

    def to_dict(self) -> dict[str, Any]:
        return {
            "single": round(self.single, 6),
            "by_depth": {str(d): round(t, 6) for d, t in self.by_depth.items()},
            "shrinkage": self.shrinkage,
            "own_thresholds": self.own_thresholds,
            "held_out": self.held_out.to_dict(),
            "cross_checked": None if self.cross_checked is None else self.cross_checked.to_dict(),
        }


@dataclass(frozen=True)
class _Counts:
    right: int
    served: int
    at_leaf: int
    leaf_right: int
    total: int

    def __add__(self, other: _Counts) -> _Counts:
        return _Counts(
            self.right + other.right,
            self.served + other.served,
            self.at_leaf + other.at_leaf,
            self.leaf_right + other.leaf_right,
            self.total + other.total,
        )

    def point(self, threshold: float, z: float = WILSON_Z) -> ServedPoint:
        n = max(self.total, 1)
        return ServedPoint(
            threshold=threshold,
            precision=self.right / self.served if self.served else 1.0,
            served=self.served / n,
            leaf_coverage=self.at_leaf / n,
            leaf_accuracy=self.leaf_right / n,
            lower_bound=wilson_lower(self.right, self.served, z),
        )


def served_depths(table: PathTable, thresholds: NDArray[Any]) -> NDArray[Any]:
    """Per row, the served path position (1-based; 0: nothing served) under per-label thresholds."""
    if table.scores.size == 0:
        return np.zeros(len(table.depth), dtype=np.int64)
    limits = np.where(table.nodes >= 0, thresholds[np.maximum(table.nodes, 0)], np.inf)
    clears = table.scores >= limits
    positions = np.arange(1, table.scores.shape[1] + 1, dtype=np.int64)
    return np.asarray((clears * positions[None, :]).max(axis=1), dtype=np.int64)


def _counts(table: PathTable, thresholds: NDArray[Any], rows: NDArray[Any] | None) -> _Counts:
    if rows is not None:
        table = _subset(table, rows)
    n = len(table.depth)
    if n == 0:
        return _Counts(0, 0, 0, 0, 0)
    depth = served_depths(table, thresholds)
    served = depth > 0
    index = np.flatnonzero(served)
    right = int(table.correct[index, depth[index] - 1].sum())
    at_leaf = served & (depth == table.depth)
    leaf_right = at_leaf & table.correct[np.arange(n), table.depth - 1]
    return _Counts(right, int(served.sum()), int(at_leaf.sum()), int(leaf_right.sum()), n)


def served_with(table: PathTable, thresholds: NDArray[Any], single: float = NEVER) -> ServedPoint:
    """What per-label ``thresholds`` serve on ``table`` (``single`` labels the point)."""
    return _counts(table, thresholds, None).point(single)


def _subset(table: PathTable, rows: NDArray[Any]) -> PathTable:
    return PathTable(table.scores[rows], table.correct[rows], table.depth[rows], table.nodes[rows])


def _better(a: ServedPoint, b: ServedPoint) -> bool:
    return (a.leaf_coverage, a.served) > (b.leaf_coverage + 1e-12, b.served + 1e-12)


def depth_thresholds(
    table: PathTable, levels: NDArray[Any], target: float, z: float = WILSON_Z
) -> tuple[float, dict[int, float]]:
    """(single threshold, level → threshold) by coordinate ascent from the single one."""
    single = max(choose_served_threshold(table, target, z=z).threshold, MIN_THRESHOLD)
    present = sorted({int(v) for v in np.unique(levels)})
    by_depth = {level: single for level in present}
    if len(table.depth) == 0 or single >= NEVER:
        return single, by_depth
    node_levels = np.where(table.nodes >= 0, levels[np.maximum(table.nodes, 0)], 0)
    grids: dict[int, NDArray[Any]] = {}
    for level in present:
        values = table.scores[node_levels == level]
        values = values[values >= 0]
        quantiles = np.quantile(values, np.linspace(0.0, 1.0, DEPTH_GRID)) if values.size else []
        grid = np.unique(np.concatenate([quantiles, [NEVER]]))
        grids[level] = grid[grid >= MIN_THRESHOLD]

    def vector(choice: dict[int, float]) -> NDArray[Any]:
        lookup = np.zeros(int(levels.max()) + 1, dtype=np.float32)
        for level, value in choice.items():
            lookup[level] = value
        return lookup[levels]

    best = served_with(table, vector(by_depth))
    for _ in range(DEPTH_ROUNDS):
        changed = False
        for level in present:
            for value in grids[level]:
                trial = {**by_depth, level: float(value)}
                point = served_with(table, vector(trial))
                if point.lower_bound >= target and _better(point, best):
                    by_depth, best, changed = trial, point, True
        if not changed:
            break
    return single, by_depth


def leaf_thresholds(
    table: PathTable,
    base: NDArray[Any],
    own_ok: NDArray[Any],
    target: float,
    shrinkage: float,
    z: float = WILSON_Z,
) -> tuple[NDArray[Any], int]:
    """(per-label thresholds, leaves given their own) from ``base``, shrunk per leaf."""
    n = len(table.depth)
    if n == 0 or table.scores.size == 0:
        return base, 0
    rows = np.arange(n)
    end_column = table.depth - 1
    end = table.nodes[rows, end_column]
    end_score = table.scores[rows, end_column].astype(np.float64)
    end_right = table.correct[rows, end_column].astype(np.float64)
    # What a row is worth when it is not answered at its leaf: served at an ancestor or not.
    at_end = np.arange(table.scores.shape[1])[None, :] == end_column[:, None]
    above = PathTable(
        np.where(at_end, -1.0, table.scores),
        table.correct,
        table.depth,
        table.nodes,
    )
    depth = served_depths(above, base)
    fallback = np.where(depth > 0, table.correct[rows, np.maximum(depth - 1, 0)] - target, 0.0)
    groups: list[tuple[int, NDArray[Any]]] = []
    for leaf in np.unique(end):
        if leaf >= 0 and bool(own_ok[leaf]):
            members = np.flatnonzero(end == leaf)
            groups.append((int(leaf), members[np.argsort(-end_score[members], kind="stable")]))
    best_vector, best_point = base, served_with(table, base)
    if best_point.lower_bound < target:
        best_point = ServedPoint(NEVER, 1.0, 0.0, 0.0, 0.0, 0.0)
    for price in PRICES:
        vector = base.copy()
        for leaf, members in groups:
            gain = np.cumsum(1.0 + price * (end_right[members] - target))
            lost = price * (fallback[members].sum() - np.cumsum(fallback[members]))
            value = gain + lost
            scores = end_score[members]
            # A cut can only fall after the last of equal scores.
            ends = np.r_[scores[1:] != scores[:-1], True]
            value = np.where(ends, value, -np.inf)
            cut = int(np.argmax(value))
            own = float(scores[cut]) if value[cut] > fallback[members].sum() * price else NEVER
            own = max(own, MIN_THRESHOLD)
            weight = len(members) / (len(members) + shrinkage)
            vector[leaf] = weight * own + (1.0 - weight) * float(base[leaf])
        point = served_with(table, vector)
        if point.lower_bound >= target and _better(point, best_point):
            best_vector, best_point = vector, point
    own_count = int(np.sum(np.abs(best_vector - base) > 1e-9))
    return best_vector.astype(np.float32), own_count


def choose_served_thresholds(
    space: LabelSpace,
    table: PathTable,
    target: float,
    shrinkage_choices: Sequence[float] = SHRINKAGE_CHOICES,
    folds: int = CHECK_FOLDS,
    seed: int = 0,
    z: float = WILSON_Z,
) -> ServedThresholds:
    """Per-depth thresholds, then per-leaf ones with the shrinkage cross-checking picks."""
    levels = np.asarray([e.level for e in space.entries], dtype=np.int64)
    has_child = np.zeros(len(space), dtype=bool)
    for entry in space.entries:
        if entry.parent >= 0:
            has_child[entry.parent] = True
    own_ok = ~has_child  # an inner-node label keeps its depth's threshold (it is an ancestor too)

    def choose(
        part: PathTable, shrinkage: float | None, depth: tuple[float, dict[int, float]]
    ) -> tuple[float, dict[int, float], NDArray[Any], int]:
        single, by_depth = depth
        lookup = np.zeros(int(levels.max()) + 1 if len(levels) else 1, dtype=np.float32)
        for level, value in by_depth.items():
            lookup[level] = value
        base = lookup[levels] if len(levels) else np.zeros(0, dtype=np.float32)
        if shrinkage is None:
            return single, by_depth, base, 0
        vector, own = leaf_thresholds(part, base, own_ok, target, shrinkage, z)
        return single, by_depth, vector, own

    n = len(table.depth)
    options: list[float | None] = [*shrinkage_choices, None]
    checked: dict[float | None, _Counts] = {}
    if n >= 2 * folds:
        assignment = np.random.default_rng(seed).permutation(n) % folds
        for fold in range(folds):
            fit_rows = np.flatnonzero(assignment != fold)
            check_rows = np.flatnonzero(assignment == fold)
            part = _subset(table, fit_rows)
            depth = depth_thresholds(part, levels, target, z)
            for option in options:
                _, _, vector, _ = choose(part, option, depth)
                counts = _counts(table, vector, check_rows)
                checked[option] = checked[option] + counts if option in checked else counts
    chosen: float | None = None
    if checked:
        # The smallest shrinkage (most leaf answers) whose unseen-row precision keeps the promise.
        keeping = [o for o in options if checked[o].point(0.0).precision >= target]
        if keeping:
            chosen = max(keeping, key=lambda o: checked[o].point(0.0).leaf_coverage)
    single, by_depth, vector, own = choose(
        table, chosen, depth_thresholds(table, levels, target, z)
    )
    held = served_with(table, vector, single)
    cross = checked[chosen].point(single) if checked else None
    return ServedThresholds(
        thresholds=np.asarray(vector, dtype=np.float32),
        single=single,
        by_depth=by_depth,
        shrinkage=chosen,
        own_thresholds=own,
        held_out=held,
        cross_checked=cross,
    )


def depth_curves(
    table: PathTable, space: LabelSpace, chosen: ServedThresholds, size: int = 12
) -> dict[str, list[dict[str, float]]]:
    """Per level: the served precision/coverage as that level's threshold moves, others fixed."""
    levels = np.asarray([e.level for e in space.entries], dtype=np.int64)
    node_levels = np.where(table.nodes >= 0, levels[np.maximum(table.nodes, 0)], 0)
    curves: dict[str, list[dict[str, float]]] = {}
    for level in sorted(chosen.by_depth):
        values = table.scores[(node_levels == level) & (table.scores >= 0)]
        if values.size == 0:
            continue
        grid = np.unique(np.quantile(values, np.linspace(0.5, 1.0, size)))
        points = []
        for value in grid:
            vector = np.where(levels == level, np.float32(value), chosen.thresholds)
            points.append(served_with(table, vector.astype(np.float32), float(value)).to_dict())
        curves[str(level)] = points
    return curves
