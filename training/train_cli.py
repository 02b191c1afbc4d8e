"""``catstream train``: train the categoriser, export a version, load it into Triton.

With human labels only (the default ``--model auto`` without ``--unlabelled``),
the linear categoriser (``training.linear``): TF-IDF + MiniLM, one linear SVM,
cross-fitted calibration and threshold, refitted on every label. With rule-labelled
``--unlabelled`` products, the Wide & Deep network below.

    catstream train --taxonomy T --labels L [--rules R --unlabelled U] [--images]
                    [--seed S] [--epochs E] [--no-load]
    catstream train --zero-shot [--taxonomy T] [--no-load]

Steps: read and normalise the products (the stream's normaliser), rule-label
the unlabelled ones, hash features and embed with MiniLM (and EfficientNet-Lite0
with ``--images``), train with early stopping on a stratified validation split,
calibrate and choose thresholds on it, score the held-out test split, write
``<model_repository>/categoriser/<N>/``, and (unless ``--no-load``) make Triton
serve N while keeping the previous version loaded for ``catstream model rollback``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from catstream.logs import get_logger
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy, TaxonomyError
from training.dataset import Example
from training.evaluation import evaluate_predictions
from training.examples import (
    TrainingSet,
    encode_examples,
    load_training_set,
    local_image_embedder,
)
from training.labels import LabelsError
from training.linear import LinearTrainConfig
from training.linear_run import export_linear, fit_linear
from training.linear_run import summary as linear_summary
from training.provenance import version_metadata
from training.rules import RulesError
from training.train import (
    EncodedData,
    TrainConfig,
    TrainedModel,
    run_network,
    train,
)
from training.unlabelled_prior import attach_prior
from training.weak_labels import training_targets
from training.zero_shot import export_zero_shot
from triton_models.categoriser.encoder import shared_encoder
from triton_models.categoriser.export import export_version, require_model_config
from triton_models.categoriser.features import FeatureHasher
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.metadata import ModelVersionError
from triton_models.categoriser.model_control import load_versions, promote
from triton_models.categoriser.network import to_torchscript
from triton_models.categoriser.scoring import score_logits

log = get_logger(__name__)


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomy", type=Path, help="category tree (default: settings)")
    parser.add_argument("--labels", type=Path, help="human labels, JSON lines")
    parser.add_argument(
        "--zero-shot",
        action="store_true",
        help="no labels: a categoriser over the whole taxonomy from MiniLM embeddings "
        "of its category names and paths",
    )
    parser.add_argument("--rules", type=Path, help="rules YAML for --unlabelled products")
    parser.add_argument("--unlabelled", type=Path, help="products to label with --rules")
    parser.add_argument(
        "--google-labels",
        action="store_true",
        help="label --unlabelled products by their feed's google_product_category "
        "(weak labels, where it names a category of the taxonomy)",
    )
    parser.add_argument("--images", action="store_true", help="fetch and embed product images")
    parser.add_argument(
        "--no-prior",
        action="store_true",
        help="linear model: do not keep the zero-shot prior for the taxonomy's categories "
        "without labels (they are then never predicted)",
    )
    parser.add_argument(
        "--model",
        choices=("auto", "linear", "wide-deep"),
        default="auto",
        help="linear: TF-IDF + MiniLM linear SVM on the human labels, refitted on all of "
        "them; wide-deep: the network that also learns rule labels; auto (default): "
        "wide-deep with --unlabelled, else linear",
    )
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--patience", type=int, default=TrainConfig.patience)
    parser.add_argument(
        "--validation-fraction", type=float, default=TrainConfig.validation_fraction
    )
    parser.add_argument("--test-fraction", type=float, default=TrainConfig.test_fraction)
    parser.add_argument("--target-precision", type=float, help="default: settings")
    parser.add_argument("--model-repository", type=Path, help="default: settings")
    parser.add_argument(
        "--config-name", help="Triton config to load with, e.g. 'gpu' (default: config.pbtxt)"
    )
    parser.add_argument("--no-load", action="store_true", help="export only; do not touch Triton")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def test_metrics(
    model: TrainedModel, examples: list[Example], data: EncodedData, taxonomy: Taxonomy
) -> dict[str, Any]:
    """Metrics on the held-out test split's human-labelled rows (empty without any)."""
    rows = np.asarray([r for r in model.split.test if examples[r].human is not None])
    if len(rows) == 0:
        return {}
    independent, exclusive = run_network(model.network, data, rows)
    scored = score_logits(model.space, model.scoring, independent, exclusive)
    truth = [int(examples[r].human) for r in rows]
    top = [int(i) for i in scored.decision.top_ids[:, 0]]
    confidence = [float(s) for s in scored.decision.top_scores[:, 0]]
    return evaluate_predictions(
        taxonomy, truth, top, confidence, target_precision=model.config.target_precision
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    repository = args.model_repository or settings.model_repository
    if args.zero_shot:
        return _run_zero_shot(args, settings, repository, started) if _exports(repository) else 2
    if args.labels is None and args.unlabelled is None:
        print(
            "catstream train: pass --labels L (human labels), --rules R --unlabelled U "
            "(rule labels), or --zero-shot to start without labels",
            file=sys.stderr,
        )
        return 2
    try:
        taxonomy = Taxonomy.load(args.taxonomy or settings.taxonomy_path)
        training = load_training_set(
            taxonomy, args.labels, args.rules, args.unlabelled, google_labels=args.google_labels
        )
    except (TaxonomyError, LabelsError, RulesError) as exc:
        print(f"catstream train: {exc}", file=sys.stderr)
        return 2
    if not _exports(repository):
        return 2
    # Without human labels, the rule labels train the linear model (the prior does the rest).
    if args.model == "linear" or (
        args.model == "auto" and (args.unlabelled is None or args.labels is None)
    ):
        return _run_linear(args, settings, taxonomy, training, repository, started)
    config = TrainConfig(
        seed=args.seed,
        epochs=args.epochs,
        patience=args.patience,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        target_precision=args.target_precision or settings.target_precision,
    )
    examples = training.examples
    human = [e.human for e in examples if e.human is not None]
    rule_ids = {c for e in examples for c in e.rules}
    space = LabelSpace.build(taxonomy, [*human, *rule_ids], human)
    print(
        f"{len(examples)} products ({len(human)} human-labelled), {len(space)} categories, "
        f"{len(space.leaf_ids)} leaf classes",
        file=sys.stderr,
    )
    images = local_image_embedder(settings) if args.images else None
    data = encode_examples(
        examples, FeatureHasher(config.n_buckets), shared_encoder(), images, not args.quiet
    )
    model = train(examples, data, space, config, progress=not args.quiet)
    metrics = {"test": test_metrics(model, examples, data, taxonomy)}
    version_dir = export_version(
        to_torchscript(model.network),
        repository,
        version_metadata(
            model, taxonomy, training.data_hash, metrics, extra={"images": bool(args.images)}
        ),
        [training.rows[r] for r in _seen_rows(model, training.rows)],
        taxonomy=taxonomy,
    )
    version = int(version_dir.name)
    elapsed = time.monotonic() - started
    _print_summary(model, metrics, version_dir, elapsed)
    return _serve(args, settings, repository, version)


def _exports(repository: Path) -> bool:
    """Whether a version can be exported there: checked before training, which takes minutes."""
    try:
        require_model_config(repository)
    except FileNotFoundError as exc:
        print(f"catstream train: {exc}", file=sys.stderr)
        return False
    return True


def _run_linear(
    args: argparse.Namespace,
    settings: Settings,
    taxonomy: Taxonomy,
    training: TrainingSet,
    repository: Path,
    started: float,
) -> int:
    config = LinearTrainConfig(seed=args.seed)
    images = local_image_embedder(settings) if args.images else None
    target = args.target_precision or settings.target_precision
    try:
        model, rows = fit_linear(
            training, taxonomy, shared_encoder(), config, target, images, not args.quiet
        )
    except ValueError as exc:
        print(f"catstream train: {exc}", file=sys.stderr)
        return 2
    targets = training_targets(training.examples, taxonomy)
    extra: dict[str, Any] = {
        "images": bool(args.images),
        "labels": {
            "human": targets.human,
            "rules": targets.weak,
            "rules_dropped": targets.weak_dropped,
        },
    }
    files: dict[str, bytes] = {}
    prior = None
    if not args.no_prior:
        prior = attach_prior(
            taxonomy, model.space, model.scoring, shared_encoder(), settings.home / "cache"
        )
    if prior is not None:
        extra.update(prior.metadata)
        files.update(prior.files)
    version_dir = export_linear(model, taxonomy, repository, training, rows, extra, files)
    print(linear_summary(model, version_dir, time.monotonic() - started))
    print(
        f"  labels: {targets.human} human, {targets.weak} from rules "
        f"({targets.weak_dropped} rule labels left out: the user labels that part of the "
        "tree, or the rules disagree); "
        + (
            f"zero-shot prior kept for {prior.unlabelled_leaves} leaves without labels"
            if prior is not None
            else "no zero-shot prior"
        )
    )
    return _serve(args, settings, repository, int(version_dir.name))


def _run_zero_shot(
    args: argparse.Namespace, settings: Settings, repository: Path, started: float
) -> int:
    if args.labels is not None:
        print(
            "catstream train: --zero-shot uses no labels; leave out --labels (or train "
            "without --zero-shot)",
            file=sys.stderr,
        )
        return 2
    try:
        taxonomy = Taxonomy.load(args.taxonomy or settings.taxonomy_path)
    except TaxonomyError as exc:
        print(f"catstream train: {exc}", file=sys.stderr)
        return 2
    version_dir = export_zero_shot(
        taxonomy, shared_encoder(), repository, cache_dir=settings.home / "cache"
    )
    print(
        f"exported {version_dir}: zero-shot over {len(taxonomy)} categories "
        f"({len(taxonomy.leaves())} leaves) in {time.monotonic() - started:.0f}s"
    )
    return _serve(args, settings, repository, int(version_dir.name))


def _serve(args: argparse.Namespace, settings: Settings, repository: Path, version: int) -> int:
    if args.no_load:
        return 0
    run_settings = settings.model_copy(update={"model_repository": repository})
    versions = promote(run_settings, version)
    try:
        load_versions(run_settings, versions, args.config_name)
    except (ModelVersionError, RuntimeError) as exc:
        print(
            f"catstream train: exported version {version} but could not load it: {exc}\n"
            f"start the stack (`catstream stack up`) and run `catstream model load {version}`",
            file=sys.stderr,
        )
        return 1
    print(f"Triton now serves categoriser version {version} (loaded: {sorted(versions)})")
    return 0


def _seen_rows(model: TrainedModel, rows: list[dict[str, Any]]) -> list[int]:
    """Human-labelled rows the model learned from (train + validation), for baseline refits."""
    seen = np.concatenate([model.split.train, model.split.validation])
    return sorted(int(r) for r in seen if r < len(rows))


def _print_summary(
    model: TrainedModel, metrics: dict[str, Any], version_dir: Path, elapsed: float
) -> None:
    test = metrics.get("test") or {}
    scoring = model.scoring
    lines = [
        f"exported {version_dir}",
        f"  epochs: best {model.best_epoch} of {len(model.history)}; "
        f"training {model.seconds:.1f}s, total {elapsed:.1f}s",
        f"  temperatures: exclusive {scoring.temperature_exclusive:.3f}, "
        f"independent {scoring.temperature_independent:.3f}; "
        f"exclusive weight {scoring.exclusive_weight}",
        f"  split: {len(model.split.train)} train, {len(model.split.validation)} validation, "
        f"{len(model.split.test)} test",
    ]
    if test:
        lines.append(
            f"  test: leaf accuracy {test['leaf_accuracy']:.3f}, weighted F1 "
            f"{test['weighted_f1']:.3f}, macro F1 {test['macro_f1']:.3f}, hierarchical F1 "
            f"{test['hierarchical_f1']:.3f}, ECE {test['ece']:.3f}"
        )
    print("\n".join(lines))
