"""The issue-9 table on the development set: catstream's linear categoriser vs TF-IDF + LinearSVC.

    .venv/bin/python -m bench.dev_benchmark [--data ../shared/data/amazon_uk_toys.jsonl]
                                            [--json out.json] [--target-precision 0.95]

The split is the data README's: categories with at least 5 products, each
category's products shuffled with one ``random.Random(0)`` in sorted category
order, the first ``round(0.7 n)`` to train (6,343 train / 2,716 test). The
taxonomy is the set of category paths. catstream is trained exactly as
``catstream train`` does (``training.linear_run.fit_linear``), exported as a
version and scored through ``serving.Predictor``, the code Triton's model runs.
The baseline is fitted on the same normalised training products.
``--text-precision int8`` trains and serves with the quantised MiniLM graph (the
categoriser config's ``text_precision``).

Reports per system: leaf accuracy, accuracy per level, served precision (the
served category is the true one or a true ancestor), served share, share served
at the true leaf, ECE, training seconds and the process's peak RSS after it; and the
out-of-domain test: trained on three top-level branches, the share of the other
branches' test products that `streams.review.needs_review` sends to review.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from catstream.taxonomy import Taxonomy
from training.baselines import LinearSvcBaseline
from training.dataset import product_fields
from training.evaluate_cli import served_metrics
from training.evaluation import evaluate_predictions
from training.examples import load_training_set
from training.labels import read_labels
from training.linear import LinearTrainConfig
from training.linear_run import export_linear, fit_linear, peak_rss_mib
from training.offline import normalise_lines
from triton_models.categoriser.encoder import shared_encoder
from triton_models.categoriser.serving import Predictor
from triton_models.text_encoder.export import Precision, parse_precision

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "amazon_uk_toys.jsonl"
CONFIG = ROOT / "triton_models" / "repository" / "categoriser" / "config.pbtxt"
MIN_PRODUCTS = 5


def dev_split(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The README's split (with a product id per line so labels never collide)."""
    by_category: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for number, row in enumerate(rows):
        by_category[row["category"]].append({"product_id": f"dev-{number}", **row})
    rng = random.Random(0)
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for category in sorted(by_category):
        items = list(by_category[category])
        if len(items) < MIN_PRODUCTS:
            continue
        rng.shuffle(items)
        cut = round(0.7 * len(items))
        train.extend(items[:cut])
        test.extend(items[cut:])
    return train, test


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def run(
    data: Path, target_precision: float, work: Path, text_precision: Precision = "fp32"
) -> dict[str, Any]:
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line]
    train_rows, test_rows = dev_split(rows)
    taxonomy_file = work / "taxonomy.txt"
    taxonomy_file.write_text("\n".join(sorted({r["category"] for r in rows})) + "\n")
    taxonomy = Taxonomy.load(taxonomy_file)
    _write(work / "train.jsonl", train_rows)
    _write(work / "test.jsonl", test_rows)
    test = read_labels(work / "test.jsonl", taxonomy)
    test_products = normalise_lines([(f"{t.source}:{t.line}", t.fields) for t in test])
    truth = [t.category_id for t in test]
    training = load_training_set(taxonomy, work / "train.jsonl")
    train_products = [e.product for e in training.examples]
    train_ids = [int(e.human) for e in training.examples if e.human is not None]
    results: dict[str, Any] = {
        "split": {"train": len(train_rows), "test": len(test_rows)},
        "text_precision": text_precision,
    }

    started = time.monotonic()
    svc = LinearSvcBaseline().fit(train_products, train_ids)
    svc_seconds = time.monotonic() - started
    svc_ids, _ = svc.predict(test_products)
    results["linear_svc"] = {
        **evaluate_predictions(taxonomy, truth, svc_ids, None, target_precision=target_precision),
        **served_metrics(taxonomy, truth, list(svc_ids)),
        "train_seconds": round(svc_seconds, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }

    started = time.monotonic()
    encoder = shared_encoder(precision=text_precision)
    model, seen = fit_linear(
        training, taxonomy, encoder, LinearTrainConfig(), target_precision, progress=False
    )
    seconds = time.monotonic() - started
    repository = work / "repository"
    (repository / "categoriser").mkdir(parents=True)
    shutil.copyfile(CONFIG, repository / "categoriser" / "config.pbtxt")
    version_dir = export_linear(model, taxonomy, repository, training, seen)
    predictor = Predictor.load(version_dir, encoder=encoder)
    outputs = predictor.predict([product_fields(p) for p in test_products])
    top = [int(i) if i >= 0 else None for i in outputs.top_ids[:, 0]]
    served = [int(i) if i >= 0 else None for i in outputs.predicted_id]
    results["catstream"] = {
        **evaluate_predictions(
            taxonomy,
            truth,
            top,
            [float(s) for s in outputs.top_scores[:, 0]],
            target_precision=target_precision,
        ),
        **served_metrics(taxonomy, truth, served),
        "train_seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "held_out": {k: v for k, v in model.held_out.items()},
        "served_threshold": model.served.threshold,
    }
    results["out_of_domain"] = out_of_domain(work, text_precision=text_precision)
    return results


IN_DOMAIN_BRANCHES = ("Die-Cast & Toy Vehicles", "Figures & Playsets", "Hobbies")


def out_of_domain(
    work: Path, measure: str = "margin", text_precision: Precision = "fp32"
) -> dict[str, Any]:
    """Train on three top-level branches' training products, predict the other branches' test
    products; the share the stream would send to review (``streams.review.needs_review``)."""
    from streams.review import needs_review, uncertainty

    taxonomy = Taxonomy.load(work / "taxonomy.txt")
    inside = work / "inside.jsonl"
    lines = (work / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    _write(inside, [r for r in rows if r["category"].split(" > ")[0] in IN_DOMAIN_BRANCHES])
    test_lines = (work / "test.jsonl").read_text(encoding="utf-8").splitlines()
    others = [json.loads(line) for line in test_lines]
    others = [r for r in others if r["category"].split(" > ")[0] not in IN_DOMAIN_BRANCHES]
    training = load_training_set(taxonomy, inside)
    encoder = shared_encoder(precision=text_precision)
    model, seen = fit_linear(training, taxonomy, encoder, LinearTrainConfig(), 0.95, progress=False)
    repository = work / "repository-ood"
    (repository / "categoriser").mkdir(parents=True)
    shutil.copyfile(CONFIG, repository / "categoriser" / "config.pbtxt")
    predictor = Predictor.load(
        export_linear(model, taxonomy, repository, training, seen), encoder=encoder
    )
    products = normalise_lines([(f"ood:{i}", r) for i, r in enumerate(others)])
    outputs = predictor.predict([product_fields(p) for p in products])
    review = [
        needs_review(measure, uncertainty(measure, list(scores)), None, bool(predicted >= 0))
        for scores, predicted in zip(outputs.top_scores, outputs.predicted_id, strict=True)
    ]
    return {
        "trained_on": list(IN_DOMAIN_BRANCHES),
        "train_products": len(training.examples),
        "predicted_products": len(products),
        "to_review": sum(review) / max(len(review), 1),
        "served": float((outputs.predicted_id >= 0).mean()) if len(products) else 0.0,
        "max_confidence": float(outputs.confidence.max()) if len(products) else 0.0,
    }


def format_results(results: dict[str, Any]) -> str:
    levels = sorted(
        {lvl for name in ("catstream", "linear_svc") for lvl in results[name]["accuracy_per_level"]}
    )
    header = ["system", "leaf acc", *(f"L{lvl} acc" for lvl in levels)]
    header += ["served precision", "served", "served = true leaf", "ECE", "train s", "peak RSS MiB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ("catstream", "linear_svc"):
        r = results[name]
        ece = "—" if r["ece"] is None else f"{r['ece']:.3f}"
        cells = [name, f"{r['leaf_accuracy']:.3f}"]
        cells += [f"{r['accuracy_per_level'].get(lvl, float('nan')):.3f}" for lvl in levels]
        cells += [
            f"{r['served_precision']:.3f}",
            f"{r['served_share']:.3f}",
            f"{r['served_at_true_leaf']:.3f}",
            ece,
            f"{r['train_seconds']:.0f}",
            f"{r['peak_rss_mib']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ood = results.get("out_of_domain")
    if ood:
        lines.append(
            f"out of domain (trained on {', '.join(ood['trained_on'])}; "
            f"{ood['predicted_products']} products of the other branches): "
            f"{ood['to_review']:.3f} to review, {ood['served']:.3f} served"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--target-precision", type=float, default=0.95)
    parser.add_argument(
        "--text-precision",
        type=parse_precision,
        default="fp32",
        help="MiniLM weights for training and serving, as the categoriser's text_precision",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = run(args.data, args.target_precision, Path(work), args.text_precision)
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
