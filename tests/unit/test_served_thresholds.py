"""Per-depth and per-leaf serving thresholds: they keep the promise on unseen rows and answer
more products at the leaf than one threshold for every category."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from catstream.taxonomy import Taxonomy
from training.evaluate_cli import format_served
from training.served_thresholds import (
    choose_served_thresholds,
    depth_curves,
    served_depths,
    served_with,
)
from training.thresholds import choose_served_threshold, path_table, served_point
from triton_models.categoriser.hierarchy import LabelSpace, decide

TREE = """\
Fancy Dress
Fancy Dress > Costumes
Fancy Dress > Costumes > Adults
Fancy Dress > Masks
Hobbies > Trains
"""
LEAVES = ("Fancy Dress > Costumes > Adults", "Fancy Dress > Masks", "Hobbies > Trains")


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_lines(TREE.splitlines(), source="tree.txt")


def simulate(
    taxonomy: Taxonomy, n: int, seed: int
) -> tuple[LabelSpace, NDArray[np.float32], NDArray[np.float32], list[int]]:
    """Calibrated scores for Adults and Trains; Masks is overconfident (right 0.75 x as often).

    A wrong Adults or Masks product is really the other one, so "Fancy Dress" stays right.
    """
    leaves = [taxonomy.by_path(p) for p in LEAVES]
    space = LabelSpace.build(taxonomy, leaves, leaves)
    order = [leaves.index(i) for i in space.leaf_ids]
    rng = np.random.default_rng(seed)
    predicted = rng.integers(0, 3, n)
    confidence = rng.uniform(0.5, 1.0, n)
    reliability = np.where(predicted == 1, 0.75, 1.0)
    right = rng.uniform(size=n) < confidence * reliability
    wrong_truth = np.where(predicted == 2, rng.integers(0, 2, n), 1 - np.minimum(predicted, 1))
    truth = np.where(right, predicted, wrong_truth)
    probabilities = np.zeros((n, 3), dtype=np.float32)
    probabilities[np.arange(n), predicted] = confidence
    for row in range(n):
        for other in range(3):
            if other != predicted[row]:
                probabilities[row, other] = (1.0 - confidence[row]) / 2.0
    own = probabilities[:, order]
    return space, space.subtree_sum(own), own, [leaves[t] for t in truth]


def test_thresholds_keep_the_promise_on_unseen_rows_and_answer_more_at_the_leaf(
    taxonomy: Taxonomy,
) -> None:
    space, scores, own, truth = simulate(taxonomy, 8000, seed=1)
    half = 4000
    fit = path_table(space, scores[:half], truth[:half], own[:half])
    check = path_table(space, scores[half:], truth[half:], own[half:])
    chosen = choose_served_thresholds(space, fit, 0.9)
    served = served_with(check, chosen.thresholds)
    single = served_point(check, choose_served_threshold(fit, 0.9).threshold)
    assert served.precision >= 0.9
    assert chosen.cross_checked is not None
    assert chosen.cross_checked.precision >= 0.9
    assert single.precision >= 0.9
    # Trains and Adults can be trusted lower than Masks: more answers at the leaf.
    assert served.leaf_coverage >= single.leaf_coverage + 0.05
    masks = space.index(taxonomy.by_path("Fancy Dress > Masks"))
    trains = space.index(taxonomy.by_path("Hobbies > Trains"))
    assert chosen.thresholds[masks] > chosen.thresholds[trains]


def test_served_depth_is_what_decide_serves(taxonomy: Taxonomy) -> None:
    """The table the thresholds are chosen on predicts exactly what serving returns."""
    space, scores, own, truth = simulate(taxonomy, 500, seed=2)
    rng = np.random.default_rng(3)
    thresholds = rng.uniform(0.5, 1.0, len(space)).astype(np.float32)
    table = path_table(space, scores, truth, own)
    depth = served_depths(table, thresholds)
    decision = decide(space, scores, thresholds, 3, own)
    for row in range(len(truth)):
        expected = -1 if depth[row] == 0 else space.entries[table.nodes[row, depth[row] - 1]].id
        assert decision.predicted[row] == expected


def test_nothing_keeps_the_promise_sends_everything_to_review(taxonomy: Taxonomy) -> None:
    space, scores, own, truth = simulate(taxonomy, 600, seed=4)
    table = path_table(space, scores, truth, own)
    chosen = choose_served_thresholds(space, table, 0.999)
    assert served_with(table, chosen.thresholds).served == 0.0


def test_evaluate_prints_the_curve_per_level(taxonomy: Taxonomy) -> None:
    space, scores, own, truth = simulate(taxonomy, 1500, seed=5)
    table = path_table(space, scores, truth, own)
    chosen = choose_served_thresholds(space, table, 0.9)
    held = {
        "leaf_accuracy": 0.8,
        "ece": 0.02,
        "thresholds": chosen.to_dict(),
        "curve": [],
        "depth_curves": depth_curves(table, space, chosen),
    }
    text = format_served({"held_out": held})
    assert "thresholds per level: L1 " in text
    assert "L3 " in text
    assert "level 1's threshold moving" in text
    assert "level 3's threshold moving" in text
    assert "thresholds never saw: precision" in text


def test_a_product_with_no_mass_is_never_served(taxonomy: Taxonomy) -> None:
    """Held-out rows all right at any score (rule labels copying a feed field) still leave
    a product whose in-domain factor zeroed its scores unanswered."""
    space, scores, own, _ = simulate(taxonomy, 900, seed=6)
    predicted = [space.leaf_ids[i] for i in own.argmax(axis=1)]
    scores[:30] *= 0.0  # a few right at zero: a factor that faded them, rules still right
    table = path_table(space, scores, predicted, own)  # every prediction right
    chosen = choose_served_thresholds(space, table, 0.9)
    assert float(chosen.thresholds.min()) >= 0.5
    faded = path_table(space, scores * 0.0, predicted, own * 0.0)
    assert served_with(faded, chosen.thresholds).served == 0.0
