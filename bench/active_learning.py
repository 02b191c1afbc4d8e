"""Active-learning benchmark: which review strategy buys accuracy with the fewest labels.

    .venv/bin/python -m bench.active_learning [--data ../shared/data/amazon_uk_toys.jsonl]
        [--max-labels 2500] [--seeds 0 1] [--out bench-results/active_learning]

Pool-based simulation on the development set (its README's split: leaves with at
least 5 products, 70/30 per leaf with ``random.Random(0)``): the 70% is the unlabelled
pool, the 30% the fixed test split. A simulated labeller answers every query with the
true leaf. Each run starts cold from 50 random labels and asks for batches of 50;
after each batch the learner is refitted and scored (leaf accuracy on the test split).

Strategies (each batch mixes in 10% random picks, as the stream's router does):

* ``random``: uniform over the unlabelled pool;
* ``margin``: smallest gap between the two best class scores ("breaking ties");
* ``entropy``: highest entropy of the class distribution;
* ``density_margin``: margin uncertainty × information density (mean cosine of a
  product to its 10 nearest pool neighbours, so outliers weigh less), picked
  greedily so that a near-duplicate (cosine ≥ 0.9) of a labelled product or of one
  already chosen in the batch is skipped.

The learner is fast on purpose (TF-IDF word 1-2-grams + char_wb 2-5-grams on title
+ brand, LinearSVC C=0.5, class scores = softmax of its decision values), so the
whole benchmark takes minutes on two cores; the strategies' ranking is what it
measures, not the categoriser's absolute accuracy.

Writes ``<out>.json`` (every curve, per seed and averaged) and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from bench.dev_benchmark import dev_split  # the data README's split, one copy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "amazon_uk_toys.jsonl"
RESULTS = ROOT / "bench-results" / "active_learning"
COLD_START = 50
BATCH = 50
RANDOM_MIX = 0.1
NEIGHBOURS = 10
DUPLICATE_COSINE = 0.9
STRATEGIES = ("random", "margin", "entropy", "density_margin")
TARGET_SHARE = 0.95  # of the full-label accuracy

Matrix = Any  # a scipy CSR matrix


@dataclass(frozen=True)
class Pool:
    x_pool: Matrix
    y_pool: NDArray[np.int64]
    x_test: Matrix
    y_test: NDArray[np.int64]
    density: NDArray[np.float64]


def _text(row: dict[str, Any]) -> str:
    return f"{row.get('title') or ''} {row.get('brand') or ''}".strip()


def build_pool(data: Path) -> Pool:
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    train, test = dev_split(rows)
    classes = {c: i for i, c in enumerate(sorted({r["category"] for r in train}))}
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    pool_text = [_text(r) for r in train]
    test_text = [_text(r) for r in test]
    # Unsupervised: the vocabulary comes from the pool's text, never from the test split.
    x_pool = sparse.hstack([words.fit_transform(pool_text), chars.fit_transform(pool_text)])
    x_test = sparse.hstack([words.transform(test_text), chars.transform(test_text)])
    x_pool, x_test = _l2(x_pool.tocsr()), _l2(x_test.tocsr())
    return Pool(
        x_pool=x_pool,
        y_pool=np.asarray([classes[r["category"]] for r in train], dtype=np.int64),
        x_test=x_test,
        y_test=np.asarray([classes[r["category"]] for r in test], dtype=np.int64),
        density=information_density(x_pool),
    )


def _l2(matrix: Matrix) -> Matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms) @ matrix


def information_density(x: Matrix, k: int = NEIGHBOURS) -> NDArray[np.float64]:
    """Mean cosine of each row to its k nearest other rows (a low value: an outlier)."""
    n = x.shape[0]
    density = np.zeros(n)
    for start in range(0, n, 1000):
        block = (x[start : start + 1000] @ x.T).toarray()
        for row in range(block.shape[0]):
            block[row, start + row] = -1.0  # not its own neighbour
        top = -np.sort(-block, axis=1)[:, :k]
        density[start : start + block.shape[0]] = top.mean(axis=1)
    return density


def class_scores(model: LinearSVC, x: Matrix) -> NDArray[np.float64]:
    decision = np.asarray(model.decision_function(x), dtype=np.float64)
    if decision.ndim == 1:  # two classes
        decision = np.stack([-decision, decision], axis=1)
    decision -= decision.max(axis=1, keepdims=True)
    exp = np.exp(decision * 5.0)  # a fixed temperature: SVM margins are small
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def margin_uncertainty(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    if scores.shape[1] < 2:
        return np.zeros(scores.shape[0])
    top = -np.sort(-scores, axis=1)
    return np.asarray(1.0 - (top[:, 0] - top[:, 1]))


def entropy_uncertainty(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    logs = np.log(scores, out=np.zeros_like(scores), where=scores > 0)
    return np.asarray(-(scores * logs).sum(axis=1) / math.log(max(scores.shape[1], 2)))


def fit(pool: Pool, labelled: list[int]) -> LinearSVC | int:
    y = pool.y_pool[labelled]
    if len(set(y.tolist())) < 2:
        return int(y[0])  # one class seen: predict it everywhere
    model = LinearSVC(C=0.5)
    with warnings.catch_warnings():  # few labels of many classes is the point here
        warnings.simplefilter("ignore", UserWarning)
        model.fit(pool.x_pool[labelled], y)
    return model


def accuracy(pool: Pool, model: LinearSVC | int) -> float:
    if isinstance(model, int):
        return float((pool.y_test == model).mean())
    return float((model.predict(pool.x_test) == pool.y_test).mean())


Picker = Callable[[Pool, LinearSVC | int, NDArray[np.int64], list[int], int], list[int]]


def pick_random(
    pool: Pool, model: LinearSVC | int, unlabelled: NDArray[np.int64], labelled: list[int], n: int
) -> list[int]:
    return []  # the random share fills the whole batch


def _by_uncertainty(measure: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> Picker:
    def pick(
        pool: Pool,
        model: LinearSVC | int,
        unlabelled: NDArray[np.int64],
        labelled: list[int],
        n: int,
    ) -> list[int]:
        if isinstance(model, int):
            return []
        value = measure(class_scores(model, pool.x_pool[unlabelled]))
        return [int(unlabelled[i]) for i in np.argsort(-value, kind="stable")[:n]]

    return pick


def pick_density_margin(
    pool: Pool, model: LinearSVC | int, unlabelled: NDArray[np.int64], labelled: list[int], n: int
) -> list[int]:
    if isinstance(model, int):
        return []
    uncertainty = margin_uncertainty(class_scores(model, pool.x_pool[unlabelled]))
    weight = uncertainty * np.clip(pool.density[unlabelled], 0.0, None)
    order = np.argsort(-weight, kind="stable")[: n * 20]
    candidates = unlabelled[order]
    rows = pool.x_pool[candidates]
    # Near-duplicates of what is labelled (or already chosen) teach nothing new.
    near_known = np.asarray((rows @ pool.x_pool[labelled].T).max(axis=1).toarray()).ravel()
    chosen: list[int] = []
    for position, candidate in enumerate(candidates):
        if near_known[position] >= DUPLICATE_COSINE:
            continue
        if chosen and (rows[position] @ pool.x_pool[chosen].T).max() >= DUPLICATE_COSINE:
            continue
        chosen.append(int(candidate))
        if len(chosen) == n:
            break
    return chosen


PICKERS: dict[str, Picker] = {
    "random": pick_random,
    "margin": _by_uncertainty(margin_uncertainty),
    "entropy": _by_uncertainty(entropy_uncertainty),
    "density_margin": pick_density_margin,
}


def run_strategy(pool: Pool, strategy: str, seed: int, max_labels: int) -> list[tuple[int, float]]:
    """(labels used, test leaf accuracy) after the cold start and after each batch."""
    rng = np.random.default_rng(seed)
    n_pool = pool.x_pool.shape[0]
    labelled = [int(i) for i in rng.choice(n_pool, COLD_START, replace=False)]
    curve: list[tuple[int, float]] = []
    while True:
        model = fit(pool, labelled)
        curve.append((len(labelled), accuracy(pool, model)))
        if len(labelled) >= min(max_labels, n_pool):
            return curve
        mask = np.ones(n_pool, dtype=bool)
        mask[labelled] = False
        unlabelled = np.flatnonzero(mask)
        size = min(BATCH, len(unlabelled))
        wanted = size if strategy == "random" else size - round(RANDOM_MIX * size)
        chosen = PICKERS[strategy](pool, model, unlabelled, labelled, wanted)
        taken = set(chosen)
        rest = np.asarray([i for i in unlabelled if i not in taken])
        fill: list[int] = (
            rng.choice(rest, size - len(chosen), replace=False).tolist()
            if size > len(chosen)
            else []
        )
        labelled.extend([*chosen, *(int(i) for i in fill)])


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in curve if acc >= target), None)


def run(
    data: Path,
    max_labels: int,
    seeds: list[int],
    out: Path,
    strategies: tuple[str, ...] = STRATEGIES,
) -> dict[str, Any]:
    started = time.process_time()
    pool = build_pool(data)
    n_pool = pool.x_pool.shape[0]
    full = accuracy(pool, fit(pool, list(range(n_pool))))
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for strategy in strategies:
        curves[strategy] = {}
        for seed in seeds:
            curves[strategy][str(seed)] = run_strategy(pool, strategy, seed, max_labels)
            print(f"  {strategy} seed {seed}: {curves[strategy][str(seed)][-1]}", flush=True)
    mean = {
        s: [
            (n, float(np.mean([runs[str(seed)][i][1] for seed in seeds])))
            for i, (n, _) in enumerate(runs[str(seeds[0])])
        ]
        for s, runs in curves.items()
    }
    random_final = mean["random"][-1][1] if "random" in mean else math.nan
    target = TARGET_SHARE * full
    summary = {
        s: {
            "final_accuracy": curve[-1][1],
            "labels_to_random_final": labels_to_reach(curve, random_final),
            "labels_to_95pct_full": labels_to_reach(curve, target),
        }
        for s, curve in mean.items()
    }
    for values in summary.values():
        reached = values["labels_to_95pct_full"]
        values["share_of_pool_to_95pct_full"] = None if reached is None else reached / n_pool
    ranked = sorted(
        strategies,
        key=lambda s: (
            summary[s]["labels_to_95pct_full"] or math.inf,
            -float(np.mean([a for _, a in mean[s]])),
        ),
    )
    report: dict[str, Any] = {
        "data": str(data),
        "pool": n_pool,
        "test": int(pool.x_test.shape[0]),
        "classes": len(set(pool.y_pool.tolist())),
        "cold_start": COLD_START,
        "batch": BATCH,
        "random_mix": RANDOM_MIX,
        "seeds": seeds,
        "learner": "TF-IDF (word 1-2, char_wb 2-5) + LinearSVC(C=0.5) on title + brand",
        "full_label_accuracy": full,
        "target_accuracy_95pct_full": target,
        "random_final_accuracy": random_final,
        "summary": summary,
        "winner": ranked[0],
        "curves_mean": mean,
        "curves": curves,
        "cpu_s": round(time.process_time() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    plot(report, out.with_suffix(".png"))
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    for strategy, curve in report["curves_mean"].items():
        xs, ys = zip(*curve, strict=True)
        axes.plot(xs, ys, label=strategy, linewidth=1.6)
    axes.axhline(report["full_label_accuracy"], color="black", linestyle=":", label="all labels")
    axes.axhline(
        report["target_accuracy_95pct_full"], color="grey", linestyle="--", label="95% of all"
    )
    axes.axvline(0.3 * report["pool"], color="grey", linestyle="-.", label="30% of the pool")
    axes.set_xlabel("labels used")
    axes.set_ylabel("leaf accuracy (test split)")
    axes.set_title(
        f"Active learning on amazon_uk_toys ({report['pool']} pool, {report['classes']} leaves)"
    )
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def table(report: dict[str, Any]) -> str:
    lines = [
        f"full-label accuracy {report['full_label_accuracy']:.3f} "
        f"(pool {report['pool']}, test {report['test']}); target 95%: "
        f"{report['target_accuracy_95pct_full']:.3f}; random's final "
        f"{report['random_final_accuracy']:.3f}",
        "strategy         final   labels→random final   labels→95% full (share of pool)",
    ]
    for strategy, values in report["summary"].items():
        share = values["share_of_pool_to_95pct_full"]
        lines.append(
            f"{strategy:<15}  {values['final_accuracy']:.3f}   "
            f"{values['labels_to_random_final'] or '-':>19}   "
            f"{values['labels_to_95pct_full'] or '-':>6} "
            f"({'-' if share is None else f'{share:.1%}'})"
        )
    lines.append(f"winner: {report['winner']}   (CPU {report['cpu_s']} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-labels", type=int, default=2500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    args = parser.parse_args()
    report = run(args.data, args.max_labels, args.seeds, args.out, tuple(args.strategies))
    print(table(report))


if __name__ == "__main__":
    main()
