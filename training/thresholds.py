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

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

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
