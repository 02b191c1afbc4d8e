"""Per-category acceptance thresholds for a target precision.

False positives cost more than misses, so each category gets the *lowest*
threshold whose validation precision still reaches the target (default 0.9):
the most coverage the precision allows. A category with too few validation
positives to estimate that gets the pooled threshold, computed the same way
over every (product, category) pair at once. A category whose precision never
reaches the target gets a threshold above 1: it is never accepted on its own
(its ancestors still can be).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.categoriser.hierarchy import LabelSpace

NEVER = 1.000001  # above any probability: "never accept this category by itself"


@dataclass(frozen=True)
class ThresholdReport:
    thresholds: NDArray[Any]  # float32 [labels]
    fallback: float
    fallback_categories: int  # how many categories used the pooled threshold


def precision_threshold(
    scores: NDArray[Any], positives: NDArray[Any], target: float, min_predicted: int = 3
) -> float | None:
    """Lowest score ``t`` with precision(score ≥ t) ≥ target over ≥ min_predicted items.

    None when no such cut exists.
    """
    if scores.size == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    true_positives = np.cumsum(positives[order].astype(np.float64))
    counts = np.arange(1, len(order) + 1, dtype=np.float64)
    precision = true_positives / counts
    # A cut can only fall between distinct scores: take the last index of each run.
    run_ends = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    valid = run_ends & (precision >= target) & (counts >= min_predicted)
    if not valid.any():
        return None
    last = int(np.flatnonzero(valid)[-1])
    return float(sorted_scores[last])


def choose_thresholds(
    scores: NDArray[Any],
    targets: NDArray[Any],
    target_precision: float = 0.9,
    min_positives: int = 5,
) -> ThresholdReport:
    """Thresholds per label-map column of ``scores`` [n, labels] given 0/1 ``targets``."""
    pooled = precision_threshold(scores.reshape(-1), targets.reshape(-1) > 0.5, target_precision)
    fallback = NEVER if pooled is None else pooled
    thresholds = np.full(scores.shape[1], fallback, dtype=np.float32)
    used_fallback = 0
    for column in range(scores.shape[1]):
        positives = targets[:, column] > 0.5
        if int(positives.sum()) < min_positives:
            used_fallback += 1
            continue
        found = precision_threshold(scores[:, column], positives, target_precision)
        thresholds[column] = NEVER if found is None else found
    return ThresholdReport(thresholds, float(fallback), used_fallback)


# ------------------------------------------------- one served-precision threshold

WILSON_Z = 1.645  # one-sided 95%: the precision bound must clear the target


@dataclass(frozen=True)
class PathTable:
    """Per product, the predicted path root→best leaf: scores and whether each node is right."""

    scores: NDArray[Any]  # float32 [n, depth], -1 padding beyond a path's end
    correct: NDArray[Any]  # bool [n, depth]: node is the true category or a true ancestor
    depth: NDArray[Any]  # int64 [n]: path length
    nodes: NDArray[Any]  # int64 [n, depth]: label-map indices, -1 padding


def path_table(
    space: LabelSpace,
    scores: NDArray[Any],
    truth: Sequence[int],
    leaf_scores: NDArray[Any] | None = None,
) -> PathTable:
    """The path to each row's best leaf-set member (``decide``'s path), against ``truth`` ids.

    ``leaf_scores`` ranks the leaf-set members as ``hierarchy.decide`` does.
    """
    leaf_positions = space.leaf_positions
    ranking = scores[:, leaf_positions] if leaf_scores is None else leaf_scores
    best = leaf_positions[np.argmax(ranking, axis=1)] if len(scores) else []
    paths = [space.path_indices(int(b)) for b in best]
    width = max((len(p) for p in paths), default=0)
    n = len(paths)
    table = np.full((n, width), -1.0, dtype=np.float32)
    correct = np.zeros((n, width), dtype=bool)
    nodes = np.full((n, width), -1, dtype=np.int64)
    for row, path in enumerate(paths):
        true_path = (
            set(space.path_indices(space.index(truth[row]))) if truth[row] in space else set()
        )
        for column, index in enumerate(path):
            table[row, column] = scores[row, index]
            correct[row, column] = index in true_path
            nodes[row, column] = index
    depth = np.asarray([len(p) for p in paths], dtype=np.int64)
    return PathTable(table, correct, depth, nodes)


def wilson_lower(successes: float, total: float, z: float = WILSON_Z) -> float:
    """Lower Wilson score bound of a binomial proportion (0.0 without trials)."""
    if total <= 0:
        return 0.0
    p = successes / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre - spread) / (1 + z * z / total)


@dataclass(frozen=True)
class ServedPoint:
    threshold: float
    precision: float  # served category is the true one or a true ancestor, among served
    served: float  # share of products with a served category
    leaf_coverage: float  # share served at the predicted path's end (the leaf)
    leaf_accuracy: float  # share served at a leaf that is the true category
    lower_bound: float  # Wilson lower bound of precision

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in self.__dict__.items()}


def served_point(table: PathTable, threshold: float, z: float = WILSON_Z) -> ServedPoint:
    """What a single threshold serves: the deepest path node whose score reaches it."""
    n = len(table.depth)
    if n == 0:
        return ServedPoint(threshold, 1.0, 0.0, 0.0, 0.0, 0.0)
    # Scores fall along a path (hierarchy consistency), so the count of nodes that
    # clear the threshold is the served depth.
    served_depth = (table.scores >= threshold).sum(axis=1)
    served = served_depth > 0
    rows = np.flatnonzero(served)
    hits = table.correct[rows, served_depth[rows] - 1]
    at_leaf = served & (served_depth == table.depth)
    right = int(hits.sum())
    total = int(served.sum())
    return ServedPoint(
        threshold=threshold,
        precision=right / total if total else 1.0,
        served=total / n,
        leaf_coverage=float(at_leaf.mean()),
        leaf_accuracy=float((at_leaf & table.correct[np.arange(n), table.depth - 1]).mean()),
        lower_bound=wilson_lower(right, total, z),
    )


def threshold_grid(table: PathTable, size: int = 400) -> NDArray[Any]:
    """Candidate thresholds: score quantiles of the path nodes, ascending."""
    values = table.scores[table.scores >= 0]
    if values.size == 0:
        return np.asarray([NEVER], dtype=np.float64)
    grid = np.quantile(values, np.linspace(0.0, 1.0, size))
    return np.unique(np.concatenate([grid, [NEVER]]))


def precision_curve(table: PathTable, size: int = 400) -> list[ServedPoint]:
    return [served_point(table, float(t)) for t in threshold_grid(table, size)]


def choose_served_threshold(
    table: PathTable, target: float, size: int = 400, z: float = WILSON_Z
) -> ServedPoint:
    """The lowest threshold (most coverage) whose precision's lower bound reaches ``target``.

    The bound (Wilson, one-sided 95%) is what keeps the promise on products the
    threshold never saw. Nothing reaches it: ``NEVER`` (everything to review).
    """
    for value in threshold_grid(table, size):
        point = served_point(table, float(value), z)
        if point.served > 0 and point.lower_bound >= target:
            return point
    return served_point(table, NEVER)
