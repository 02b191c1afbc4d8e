"""``catstream evaluate --labels test.jsonl [--json out.json]``: catstream against baselines.

Scores, on the same labelled products and with the same metrics
(``evaluation.evaluate_predictions``):

- ``catstream``: the served categoriser (or ``--version``) through Triton, top leaf;
- ``catstream@thresholds``: its thresholded decision (deepest accepted category,
  abstaining when nothing passes), i.e. what the stream auto-accepts;
- ``tfidf_lr``: TF-IDF + logistic regression refitted on the rows that model
  version learned from (its ``train.jsonl``), so both saw the same data;
- ``rules``: the rule labeller (``--rules``; the starter rules for the default
  Google taxonomy), when there is one.

Prints a table and writes the same numbers as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy, TaxonomyError
from training.baselines import evaluate_baselines
from training.evaluation import evaluate_predictions, format_table
from training.labels import LabelsError, read_labels
from training.offline import normalise_lines, predict_products
from training.rules import RuleLabeller, RulesError
from triton_models.categoriser.metadata import (
    TRAIN_ROWS_FILE,
    ModelVersionError,
    load_metadata,
    model_dir,
    version_taxonomy,
)

STARTER_RULES = Path(__file__).with_name("rules") / "google_starter.yaml"


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, required=True, help="labelled test products")
    parser.add_argument("--json", type=Path, help="also write the metrics here")
    parser.add_argument("--taxonomy", type=Path, help="default: the one the model was trained on")
    parser.add_argument("--rules", type=Path, help="rules YAML for the rule baseline")
    parser.add_argument("--version", type=int, help="categoriser version (default: served)")
    parser.add_argument("--no-images", action="store_true", help="categorise from text only")
    parser.add_argument("--target-precision", type=float, help="default: settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _rules(args: argparse.Namespace, taxonomy: Taxonomy, settings: Settings) -> RuleLabeller | None:
    if args.rules is not None:
        return RuleLabeller.load(args.rules, taxonomy)
    default = Taxonomy.load(settings.taxonomy_path)
    if default.hash == taxonomy.hash and STARTER_RULES.is_file():
        return RuleLabeller.load(STARTER_RULES, taxonomy)
    return None


def evaluate(args: argparse.Namespace, settings: Settings) -> dict[str, dict[str, Any]]:
    metadata = load_metadata(settings.model_repository, args.version)
    taxonomy = version_taxonomy(settings.model_repository, metadata, args.taxonomy)
    target = args.target_precision or settings.target_precision
    test = read_labels(args.labels, taxonomy)
    products = normalise_lines([(f"{t.source}:{t.line}", t.fields) for t in test])
    truth = [t.category_id for t in test]
    outputs, _ = predict_products(
        settings, products, metadata, images=not args.no_images, progress=not args.quiet
    )
    results: dict[str, dict[str, Any]] = {
        "catstream": evaluate_predictions(
            taxonomy,
            truth,
            [o.top_ids[0] if o.top_ids and o.top_ids[0] >= 0 else None for o in outputs],
            [o.top_scores[0] if o.top_scores else None for o in outputs],
            target_precision=target,
        ),
        "catstream@thresholds": evaluate_predictions(
            taxonomy,
            truth,
            [o.predicted_id for o in outputs],
            [o.confidence for o in outputs],
            target_precision=target,
        ),
    }
    results["catstream@thresholds"].update(
        served_metrics(taxonomy, truth, [o.predicted_id for o in outputs])
    )
    held_out = metadata.raw.get("held_out")
    if held_out:
        results["held_out"] = dict(held_out)
    train_file = model_dir(settings.model_repository) / str(metadata.version) / TRAIN_ROWS_FILE
    train = read_labels(train_file, taxonomy)
    train_products = normalise_lines([(f"{t.source}:{t.line}", t.fields) for t in train])
    results.update(
        evaluate_baselines(
            taxonomy,
            train_products,
            [t.category_id for t in train],
            products,
            truth,
            rules=_rules(args, taxonomy, settings),
            target_precision=target,
            seed=int(metadata.raw.get("hyperparameters", {}).get("seed", 13)),
        )
    )
    return results


def served_metrics(
    taxonomy: Taxonomy, truth: list[int], served: list[int | None]
) -> dict[str, float]:
    """Served precision (the true category or a true ancestor, among served), coverage."""
    answered = [(t, s) for t, s in zip(truth, served, strict=True) if s is not None]
    right = sum(1 for t, s in answered if s in taxonomy.ancestors_and_self(t))
    total = len(truth) or 1
    return {
        "served_precision": right / len(answered) if answered else 1.0,
        "served_share": len(answered) / total,
        "served_at_true_leaf": sum(1 for t, s in answered if s == t) / total,
    }


def format_served(results: dict[str, dict[str, Any]]) -> str:
    """The served lines and the held-out precision/coverage curve, when the model has one."""
    served = results.get("catstream@thresholds", {})
    lines = []
    if "served_precision" in served:
        lines.append(
            f"served category (true leaf or true ancestor): precision "
            f"{served['served_precision']:.3f}, served {served['served_share']:.3f}, "
            f"served at the true leaf {served['served_at_true_leaf']:.3f}"
        )
    held = results.get("held_out")
    if held:
        lines.append(
            f"held-out ({held.get('fit', 'cross-fitted')}): leaf accuracy "
            f"{held['leaf_accuracy']:.3f}, ECE {held['ece']:.3f}"
        )
        lines.extend(format_thresholds(held))
        lines.append("  one threshold for every category:")
        lines.extend(_curve_lines(held.get("curve", [])))
        for level, points in sorted(held.get("depth_curves", {}).items()):
            lines.append(f"  level {level}'s threshold moving, the others as served:")
            lines.extend(_curve_lines(points))
    return "\n".join(lines)


def _curve_lines(points: list[dict[str, float]]) -> list[str]:
    lines = ["  threshold  precision  served  at-leaf"]
    for point in points:
        lines.append(
            f"  {point['threshold']:9.4f}  {point['precision']:9.3f}  "
            f"{point['served']:6.3f}  {point['leaf_coverage']:7.3f}"
        )
    return lines


def format_thresholds(held: dict[str, Any]) -> list[str]:
    """The served thresholds (per level, per leaf) and their cross-checked promise."""
    chosen = held.get("thresholds")
    if not chosen:
        return []
    levels = ", ".join(f"L{k} {v:.4f}" for k, v in sorted(chosen["by_depth"].items()))
    shrinkage = chosen.get("shrinkage")
    lines = [
        f"  thresholds per level: {levels}; "
        + (
            f"{chosen['own_thresholds']} leaves with their own, shrunk to the level's "
            f"with {shrinkage:g} pseudo-products"
            if shrinkage is not None
            else "no per-leaf thresholds"
        )
    ]
    cross = chosen.get("cross_checked")
    if cross:
        lines.append(
            f"  on held-out rows the thresholds never saw: precision {cross['precision']:.3f}, "
            f"served {cross['served']:.3f}, at the leaf {cross['leaf_coverage']:.3f}"
        )
    return lines


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        results = evaluate(args, settings)
    except (TaxonomyError, LabelsError, RulesError, ModelVersionError) as exc:
        print(f"catstream evaluate: {exc}", file=sys.stderr)
        return 2
    table = {k: v for k, v in results.items() if k != "held_out"}
    print(format_table(table))
    extra = format_served(results)
    if extra:
        print(extra)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
        print(f"wrote {args.json}")
    return 0
