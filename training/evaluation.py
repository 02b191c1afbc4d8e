"""Evaluation metrics for category predictions over a taxonomy (pure numpy/sklearn).

Every system is scored on *all* products of a split: a system that abstains
(predicts None) on a product gets it wrong for accuracy and F1, and gains no
credit in hierarchical metrics, so abstaining cannot inflate a score. Coverage
at the target precision then shows what a system can safely auto-accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from catstream.taxonomy import Taxonomy

ECE_BINS = 15
ABSTAIN = -1  # label used for "no prediction" in sklearn calls


def _check_lengths(true_ids: Sequence[int], *others: Sequence[Any] | None) -> None:
    for other in others:
        if other is not None and len(other) != len(true_ids):
            raise ValueError(
                f"got {len(true_ids)} true labels but {len(other)} predictions or confidences; "
                "pass one prediction per labelled product"
            )


def leaf_accuracy(true_ids: Sequence[int], pred_ids: Sequence[int | None]) -> float:
    if not true_ids:
        return 0.0
    return float(np.mean([t == p for t, p in zip(true_ids, pred_ids, strict=True)]))


def f1_scores(true_ids: Sequence[int], pred_ids: Sequence[int | None]) -> tuple[float, float]:
    """(weighted F1, macro F1) over the classes present in the truth; abstain is a miss."""
    if not true_ids:
        return 0.0, 0.0
    y_true = np.asarray(true_ids, dtype=np.int64)
    y_pred = np.asarray([ABSTAIN if p is None else p for p in pred_ids], dtype=np.int64)
    labels = np.unique(y_true)
    weighted = f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
    macro = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return float(weighted), float(macro)


def accuracy_per_level(
    taxonomy: Taxonomy, true_ids: Sequence[int], pred_ids: Sequence[int | None]
) -> dict[int, float]:
    """Level → share of products (whose truth reaches that level) right at that level."""
    result: dict[int, float] = {}
    for level in range(1, taxonomy.depth + 1):
        hits: list[bool] = []
        for true_id, pred_id in zip(true_ids, pred_ids, strict=True):
            truth = taxonomy.ancestor_at_level(true_id, level)
            if truth is None:
                continue
            guess = None if pred_id is None else taxonomy.ancestor_at_level(pred_id, level)
            hits.append(guess == truth)
        if hits:
            result[level] = float(np.mean(hits))
    return result


def hierarchical_prf(
    taxonomy: Taxonomy, true_ids: Sequence[int], pred_ids: Sequence[int | None]
) -> tuple[float, float, float]:
    """Kiritchenko et al.'s micro hP, hR, hF over ancestor-and-self sets."""
    overlap = predicted = actual = 0
    for true_id, pred_id in zip(true_ids, pred_ids, strict=True):
        truth = set(taxonomy.ancestors_and_self(true_id))
        guess = set() if pred_id is None else set(taxonomy.ancestors_and_self(pred_id))
        overlap += len(truth & guess)
        predicted += len(guess)
        actual += len(truth)
    precision = overlap / predicted if predicted else 0.0
    recall = overlap / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> float:
    """Top-1 ECE: bin-weighted |accuracy − mean confidence| over equal-width bins."""
    if not confidences:
        return 0.0
    conf = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(correct, dtype=np.float64)
    # Bin i holds (i/bins, (i+1)/bins]; confidence 0 goes to the first bin.
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(hit[mask].mean() - conf[mask].mean())
    return float(total / len(conf))


def coverage_at_precision(
    confidences: Sequence[float], correct: Sequence[bool], total: int, target: float
) -> tuple[float, float | None]:
    """(share of all ``total`` products auto-accepted, confidence threshold).

    Accepting every answer with confidence ≥ t, choose the lowest t whose accepted set
    still has precision ≥ target. Ties in confidence are accepted or refused together,
    since a threshold cannot split them. (0.0, None) when no threshold reaches target.
    """
    if not confidences or total <= 0:
        return 0.0, None
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    conf, hit = conf[order], hit[order]
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    # Only the last position of each run of equal confidences is a valid cut.
    cut = np.append(conf[1:] != conf[:-1], True)
    valid = np.flatnonzero(cut & (precision >= target - 1e-12))
    if not len(valid):
        return 0.0, None
    last = int(valid[-1])
    return (last + 1) / total, float(conf[last])


def evaluate_predictions(
    taxonomy: Taxonomy,
    true_ids: Sequence[int],
    pred_ids: Sequence[int | None],
    confidences: Sequence[float | None] | None = None,
    *,
    target_precision: float = 0.9,
) -> dict[str, Any]:
    """All metrics of one system on one split, as a JSON-ready dict."""
    _check_lengths(true_ids, pred_ids, confidences)
    for value in (*true_ids, *(p for p in pred_ids if p is not None)):
        taxonomy.get(value)  # raises UnknownCategoryError naming the taxonomy
    weighted_f1, macro_f1 = f1_scores(true_ids, pred_ids)
    h_precision, h_recall, h_f1 = hierarchical_prf(taxonomy, true_ids, pred_ids)
    answered = [i for i, p in enumerate(pred_ids) if p is not None]
    correct = [true_ids[i] == pred_ids[i] for i in answered]
    results: dict[str, Any] = {
        "n": len(true_ids),
        "answered": len(answered) / len(true_ids) if true_ids else 0.0,
        "leaf_accuracy": leaf_accuracy(true_ids, pred_ids),
        "precision_answered": float(np.mean(correct)) if correct else 0.0,
        "weighted_f1": weighted_f1,
        "macro_f1": macro_f1,
        "accuracy_per_level": {
            str(k): v for k, v in accuracy_per_level(taxonomy, true_ids, pred_ids).items()
        },
        "hierarchical_precision": h_precision,
        "hierarchical_recall": h_recall,
        "hierarchical_f1": h_f1,
        "ece": None,
        "target_precision": target_precision,
        "coverage_at_target_precision": None,
        "threshold_at_target_precision": None,
    }
    if confidences is not None:
        scored = [i for i in answered if confidences[i] is not None]
        conf = [float(confidences[i]) for i in scored]  # type: ignore[arg-type]
        hits = [true_ids[i] == pred_ids[i] for i in scored]
        results["ece"] = expected_calibration_error(conf, hits)
        coverage, threshold = coverage_at_precision(conf, hits, len(true_ids), target_precision)
        results["coverage_at_target_precision"] = coverage
        results["threshold_at_target_precision"] = threshold
    return results


# ------------------------------------------------------------------- the table

_ROWS: tuple[tuple[str, str], ...] = (
    ("n", "products"),
    ("answered", "answered"),
    ("leaf_accuracy", "leaf accuracy"),
    ("precision_answered", "precision (answered)"),
    ("weighted_f1", "weighted F1"),
    ("macro_f1", "macro F1"),
    ("hierarchical_precision", "hierarchical precision"),
    ("hierarchical_recall", "hierarchical recall"),
    ("hierarchical_f1", "hierarchical F1"),
    ("ece", "calibration error (ECE)"),
    ("coverage_at_target_precision", "coverage @ precision"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):  # bool included
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Systems side by side (columns) over the metrics (rows), as aligned text."""
    systems = list(results)
    levels = sorted({int(k) for r in results.values() for k in (r.get("accuracy_per_level") or {})})
    rows: list[list[str]] = [["metric", *systems]]
    for key, title in _ROWS:
        if key == "coverage_at_target_precision":
            targets = {r.get("target_precision") for r in results.values()}
            if len(targets) == 1 and None not in targets:
                title = f"coverage @ precision {next(iter(targets)):.2f}"
        rows.append([title, *(_cell(results[s].get(key)) for s in systems)])
        if key == "macro_f1":
            for level in levels:
                rows.append(
                    [
                        f"accuracy level {level}",
                        *(
                            _cell((results[s].get("accuracy_per_level") or {}).get(str(level)))
                            for s in systems
                        ),
                    ]
                )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
