"""The active-learning benchmark (``make bench``; skipped by default): bench/active_learning.py.

Runs the full simulation on the development set (no stack needed), writes
``bench-results/active_learning.{json,png}`` and copies the plot to
``docs/images/active_learning.png`` for the README. Asserts what must hold
whatever the machine: every curve starts at the cold start and grows by batches,
accuracy stays in [0, 1], the winning strategy (chosen on a validation fifth of the
pool, never on the test split) beats random sampling's final accuracy with fewer
labels and reaches 95% of the full-label accuracy with at most 30% of the pool, and
the review app serves that strategy by default (``Settings.review_order``).
"""

from __future__ import annotations

import itertools
import shutil

import pytest

from bench.active_learning import BATCH, COLD_START, DEFAULT_DATA, RESULTS, ROOT, run, table
from catstream.settings import Settings


@pytest.mark.bench
@pytest.mark.timeout(7200)
def test_active_learning_benchmark() -> None:
    report = run(DEFAULT_DATA, max_labels=3000, seeds=[0, 1], out=RESULTS, selection_seeds=[0])
    print("\n" + table(report))
    for curve in report["curves_mean"].values():
        sizes = [n for n, _ in curve]
        assert sizes[0] == COLD_START
        assert all(b - a == BATCH for a, b in itertools.pairwise(sizes))
        assert all(0.0 <= acc <= 1.0 for _, acc in curve)
    winner = report["summary"][report["winner"]]
    assert report["winner"] != "random"
    assert winner["labels_to_random_final"] is not None
    assert winner["labels_to_random_final"] < report["curves_mean"]["random"][-1][0]
    assert winner["share_of_pool_to_95pct_full"] is not None
    assert winner["share_of_pool_to_95pct_full"] <= 0.30
    assert Settings().review_order == report["winner"]  # what /review hands out
    (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RESULTS.with_suffix(".png"), ROOT / "docs" / "images" / "active_learning.png")
