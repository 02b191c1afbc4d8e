"""Metrics on hand-computed cases, the side-by-side table, and both baselines."""

from __future__ import annotations

import pytest

from catstream.taxonomy import Taxonomy, UnknownCategoryError
from training.baselines import (
    RuleBaseline,
    TfidfLogisticBaseline,
    baseline_text,
    evaluate_baselines,
)
from training.evaluation import (
    accuracy_per_level,
    coverage_at_precision,
    evaluate_predictions,
    expected_calibration_error,
    f1_scores,
    format_table,
    hierarchical_prf,
)
from training.rules import RuleLabeller

# A (1) > B (2) > {C (3), D (4)};  A > E (5);  F (6) > G (7)
TAXONOMY = Taxonomy.from_lines(
    ["1 - A", "2 - A > B", "3 - A > B > C", "4 - A > B > D", "5 - A > E", "6 - F", "7 - F > G"],
    source="metrics.txt",
)


def test_hierarchical_prf_by_hand() -> None:
    # truth C={A,B,C}, pred D={A,B,D}: overlap 2 of 3 and 3
    # truth G={F,G},   pred E={A,E}:   overlap 0 of 2 and 2
    # truth E={A,E},   abstain:        overlap 0 of 0 and 2
    precision, recall, f1 = hierarchical_prf(TAXONOMY, [3, 7, 5], [4, 5, None])
    assert precision == pytest.approx(2 / 5)
    assert recall == pytest.approx(2 / 7)
    assert f1 == pytest.approx(2 * (2 / 5) * (2 / 7) / (2 / 5 + 2 / 7))


def test_accuracy_per_level_skips_shallow_truths() -> None:
    # level 1: C→D right, G→E wrong, E→E right;  level 2: C→D right (B), E→E right, G→E wrong
    # level 3: only C has a level 3: D is wrong
    assert accuracy_per_level(TAXONOMY, [3, 7, 5], [4, 5, 5]) == {
        1: pytest.approx(2 / 3),
        2: pytest.approx(2 / 3),
        3: 0.0,
    }
    # Predicting an internal node earns its levels only.
    assert accuracy_per_level(TAXONOMY, [3], [2]) == {1: 1.0, 2: 1.0, 3: 0.0}


def test_f1_counts_abstain_as_a_miss() -> None:
    weighted, macro = f1_scores([3, 3, 4, 4], [3, None, 4, 4])
    # class 3: P=1 R=.5 F=2/3; class 4: P=1 R=1 F=1
    assert macro == pytest.approx((2 / 3 + 1) / 2)
    assert weighted == pytest.approx((2 / 3 + 1) / 2)
    weighted, macro = f1_scores([3, 3, 3, 4], [3, 3, 3, 3])
    # class 3: P=3/4 R=1 F=6/7; class 4: F=0; weights 3:1
    assert macro == pytest.approx(3 / 7)
    assert weighted == pytest.approx(0.75 * 6 / 7)


def test_ece_by_hand() -> None:
    # Bin (0.8667, 0.9333]: conf .9 .9, accuracy .5 → gap .4, weight 2/4
    # Bin (0.2667, 0.3333]: conf .3 .3, accuracy .5 → gap .2, weight 2/4
    ece = expected_calibration_error([0.9, 0.9, 0.3, 0.3], [True, False, True, False])
    assert ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.2)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    assert expected_calibration_error([], []) == 0.0


def test_coverage_at_precision() -> None:
    conf = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
    hit = [True, True, True, True, False, False]
    assert coverage_at_precision(conf, hit, total=6, target=0.9) == (4 / 6, 0.8)
    # 10 products in all (4 abstained): coverage is a share of all of them.
    assert coverage_at_precision(conf, hit, total=10, target=0.8)[0] == pytest.approx(0.5)
    # Precision of the top 5 is 0.8 exactly: accepted at target 0.8.
    assert coverage_at_precision(conf, hit, total=6, target=0.8) == (5 / 6, 0.7)
    assert coverage_at_precision([0.9], [False], total=1, target=0.9) == (0.0, None)
    # Ties cannot be split by a threshold: the tied pair is 1 of 2 right.
    assert coverage_at_precision([0.9, 0.9], [True, False], total=2, target=0.9) == (0.0, None)


def test_evaluate_predictions_end_to_end() -> None:
    results = evaluate_predictions(
        TAXONOMY,
        [3, 4, 5, 7],
        [3, 3, None, 7],
        [0.9, 0.6, None, 0.95],
        target_precision=0.9,
    )
    assert results["n"] == 4
    assert results["answered"] == 0.75
    assert results["leaf_accuracy"] == 0.5
    assert results["precision_answered"] == pytest.approx(2 / 3)
    assert results["accuracy_per_level"] == {"1": 0.75, "2": 0.75, "3": 0.5}
    assert results["coverage_at_target_precision"] == 0.5
    assert results["threshold_at_target_precision"] == 0.9
    assert 0 < results["ece"] < 1
    no_conf = evaluate_predictions(TAXONOMY, [3], [3])
    assert no_conf["ece"] is None
    assert no_conf["coverage_at_target_precision"] is None


def test_evaluate_predictions_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one prediction per labelled product"):
        evaluate_predictions(TAXONOMY, [3, 4], [3])
    with pytest.raises(UnknownCategoryError, match="category id 99"):
        evaluate_predictions(TAXONOMY, [3], [99])


def test_format_table_shows_systems_side_by_side() -> None:
    good = evaluate_predictions(TAXONOMY, [3, 4], [3, 4], [0.9, 0.8])
    bad = evaluate_predictions(TAXONOMY, [3, 4], [None, 3], [None, 0.5])
    table = format_table({"catstream": good, "rules": bad})
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "catstream", "rules"]
    assert "leaf accuracy" in table
    row = next(line for line in lines if line.startswith("leaf accuracy"))
    assert row.split()[-2:] == ["1.000", "0.000"]
    assert any(line.startswith("accuracy level 3") for line in lines)
    assert "coverage @ precision 0.90" in table
    assert len({len(line) for line in lines[:2]}) == 1


# ------------------------------------------------------------------ baselines

RETAIL = Taxonomy.from_lines(
    [
        "Home > Kitchen > Mugs",
        "Home > Kitchen > Knives",
        "Clothing > Dresses",
        "Clothing > Shoes",
    ],
    source="retail.txt",
)
MUGS, KNIVES, DRESSES, SHOES = (
    RETAIL.by_path(p)
    for p in (
        "Home > Kitchen > Mugs",
        "Home > Kitchen > Knives",
        "Clothing > Dresses",
        "Clothing > Shoes",
    )
)
TRAIN = [
    ({"title": "Ceramic coffee mug 350ml"}, MUGS),
    ({"title": "Travel mug stainless"}, MUGS),
    ({"title": "Enamel camping mug"}, MUGS),
    ({"title": "Chef knife 20cm"}, KNIVES),
    ({"title": "Paring knife set"}, KNIVES),
    ({"title": "Bread knife serrated"}, KNIVES),
    ({"title": "Floral summer dress"}, DRESSES),
    ({"title": "Black evening dress"}, DRESSES),
    ({"title": "Linen maxi dress"}, DRESSES),
    ({"title": "Running shoes mesh"}, SHOES),
    ({"title": "Leather shoes brown", "brand": "Clarks"}, SHOES),
    ({"title": "Canvas shoes white"}, SHOES),
]
TEST = [
    ({"title": "Porcelain mug blue"}, MUGS),
    ({"title": "Santoku knife"}, KNIVES),
    ({"title": "Cocktail dress red"}, DRESSES),
    ({"title": "Trail running shoes"}, SHOES),
]


def test_baseline_text_uses_title_brand_and_raw_category() -> None:
    text = baseline_text({"title": "Mug", "brand": "ACME", "raw_category": "Home/Kitchen"})
    assert text == "mug | acme | home > kitchen"


def test_tfidf_baseline_learns_the_categories() -> None:
    model = TfidfLogisticBaseline().fit([p for p, _ in TRAIN], [c for _, c in TRAIN])
    ids, confidences = model.predict([p for p, _ in TEST])
    assert ids == [c for _, c in TEST]
    assert all(c is not None and 0.25 < c <= 1.0 for c in confidences)
    probabilities = model.predict_proba([p for p, _ in TEST])
    assert probabilities.shape == (4, 4)
    assert probabilities.sum(axis=1) == pytest.approx([1.0] * 4)


def test_tfidf_baseline_errors() -> None:
    with pytest.raises(RuntimeError, match="call fit"):
        TfidfLogisticBaseline().predict([{"title": "x"}])
    with pytest.raises(ValueError, match="at least 2 categories"):
        TfidfLogisticBaseline().fit([{"title": "x"}], [MUGS])


def test_rule_baseline_and_evaluate_baselines() -> None:
    rules = RuleLabeller.from_mapping(
        {
            "rules": [
                {"category": "Clothing > Dresses", "title": ["dress"]},
                {"category": "Home > Kitchen", "title": ["mug", "knife"]},
                {"category": "Home > Kitchen > Mugs", "title": ["mug"]},
            ]
        },
        RETAIL,
    )
    ids, confidences = RuleBaseline(rules).predict([p for p, _ in TEST])
    assert ids == [MUGS, RETAIL.by_path("Home > Kitchen"), DRESSES, None]
    assert confidences == [1.0, 1.0, 1.0, None]
    results = evaluate_baselines(
        RETAIL,
        [p for p, _ in TRAIN],
        [c for _, c in TRAIN],
        [p for p, _ in TEST],
        [c for _, c in TEST],
        rules=rules,
    )
    assert set(results) == {"tfidf_lr", "linear_svc", "rules"}
    assert results["tfidf_lr"]["leaf_accuracy"] == 1.0
    assert results["linear_svc"]["leaf_accuracy"] == 1.0
    assert results["linear_svc"]["ece"] is None  # a linear SVM gives no probabilities
    assert results["rules"]["leaf_accuracy"] == 0.5
    assert results["rules"]["answered"] == 0.75
    assert results["rules"]["accuracy_per_level"]["2"] == 0.75
