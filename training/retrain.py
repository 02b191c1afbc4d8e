"""Champion/challenger retraining from the labellers' answers (issue 11).

One round (``retrain_once``):

1. read ``products.labels`` (the latest label per product; "not a product" and
   "can't tell" answers are left out) and join each with its product text (the
   label's own fields, else the product's latest review item);
2. split: labels of **random review samples** (``Label.random_sample``, or the
   review item's) are the **holdout**, never trained on; every other label, plus
   the lines of the ``--labels`` files given (minus holdout products), is training
   data; with ``--unlabelled`` products the starter rules label those too;
3. train a challenger with ``catstream train --no-load`` (the same command a person
   runs; it picks the model kind);
4. score the champion (the served version) and the challenger on the same holdout
   with ``serving.Predictor`` (the code Triton's model runs), leaf accuracy;
5. promote the challenger only when it beats the champion by more than
   ``settings.retrain_margin`` on at least ``settings.retrain_min_holdout`` holdout
   labels (or when there is no champion): ``model_control.promote`` +
   ``load_versions``, exactly what ``catstream model load`` does, so Triton serves it
   and the stream's ``ModelState`` switches without a restart. A challenger that
   loses is moved out of the version numbers (``categoriser/rejected/<N>-<time>/``),
   so ``catstream model rollback`` never lands on it;
6. record the decision and both scores in the challenger's ``metadata.json``
   (``retrain``), in a ``ModelDecision`` event on ``products.models`` (the dashboard
   plots it), and in the log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from pydantic import ValidationError

from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy, UnknownCategoryError
from schemas.events import Label, ModelDecision, ReviewItem
from streams.review_cli import label_line, read_topic
from training.dataset import product_fields
from training.evaluation import evaluate_predictions
from training.examples import normalised
from triton_models.categoriser.metadata import (
    METADATA_FILE,
    ModelVersionError,
    model_dir,
    served_version,
    version_dirs,
    version_taxonomy,
)
from triton_models.categoriser.model_control import (
    load_versions,
    promote,
    write_version_policy,
)
from triton_models.categoriser.serving import Predictor

log = get_logger(__name__)


class RetrainError(RuntimeError):
    """A round that cannot go on; the message says what to do."""


@dataclass
class LabelledData:
    training: list[dict[str, Any]] = field(default_factory=list)
    holdout: list[dict[str, Any]] = field(default_factory=list)
    left_out: int = 0  # verdicts, unknown categories, labels without product text


@dataclass(frozen=True)
class RetrainResult:
    decision: ModelDecision
    challenger_dir: Path


def latest_labels(settings: Settings) -> dict[str, Label]:
    latest: dict[str, Label] = {}
    for value in read_topic(settings, "labels"):
        try:
            label = Label.model_validate_json(value)
        except ValidationError:
            continue
        previous = latest.get(label.product_id)
        if previous is None or label.labelled_at >= previous.labelled_at:
            latest[label.product_id] = label
    return latest


def latest_items(settings: Settings, wanted: set[str]) -> dict[str, ReviewItem]:
    latest: dict[str, ReviewItem] = {}
    for value in read_topic(settings, "review"):
        try:
            item = ReviewItem.model_validate_json(value)
        except ValidationError:
            continue
        if item.product_id in wanted:
            previous = latest.get(item.product_id)
            if previous is None or item.created_at >= previous.created_at:
                latest[item.product_id] = item
    return latest


def split_labels(
    labels: dict[str, Label], items: dict[str, ReviewItem], taxonomy: Taxonomy
) -> LabelledData:
    data = LabelledData()
    for product_id, label in labels.items():
        if not label.has_category:
            data.left_out += 1
            continue
        try:
            path = taxonomy.path_str(taxonomy.resolve(label.category))
        except UnknownCategoryError:
            data.left_out += 1
            continue
        item = items.get(product_id)
        line = label_line(label, item, path)
        if line is None:
            data.left_out += 1
            continue
        holdout = label.random_sample or (item is not None and item.random_sample)
        (data.holdout if holdout else data.training).append(line)
    return data


def file_lines(paths: Sequence[Path], exclude: set[str]) -> list[dict[str, Any]]:
    """Lines of labelled files, except products of the holdout (never trained on)."""
    lines: list[dict[str, Any]] = []
    for path in paths:
        for number, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as exc:
                raise RetrainError(f"{path}:{number}: not JSON ({exc}); fix the line") from None
            if str(line.get("product_id", "")) not in exclude:
                lines.append(line)
    return lines


def holdout_accuracy(
    version_dir: Path, repository: Path, holdout: list[dict[str, Any]], settings: Settings
) -> float:
    """Leaf accuracy of a version's top leaf on the holdout (in its own taxonomy)."""
    predictor = Predictor.load(version_dir)
    taxonomy = version_taxonomy(repository, predictor.metadata, name=settings.categoriser_model)
    products = [normalised(line, f"holdout:{i}") for i, line in enumerate(holdout)]
    truth: list[int | None] = []
    for line in holdout:
        try:
            truth.append(taxonomy.resolve(line["category"]))
        except UnknownCategoryError:
            truth.append(None)  # the version's tree lacks it: counted as wrong
    outputs = predictor.predict([product_fields(p) for p in products])
    top = [int(row[0]) if int(row[0]) >= 0 else None for row in outputs.top_ids]
    known = [(t, p) for t, p in zip(truth, top, strict=True) if t is not None]
    if not known:
        return 0.0
    metrics = evaluate_predictions(
        taxonomy,
        [t for t, _ in known],
        [p for _, p in known],
        [None] * len(known),
        target_precision=settings.target_precision,
    )
    # Holdout products outside the version's taxonomy count as misses.
    return float(metrics["leaf_accuracy"]) * len(known) / len(holdout)


def train_challenger(settings: Settings, training_file: Path, options: argparse.Namespace) -> int:
    """``catstream train --no-load`` on the training file; the new version's number."""
    from training import train_cli

    parser = argparse.ArgumentParser(prog="catstream")
    train_cli.register(parser.add_subparsers(), "train", "")
    argv = ["train", "--labels", str(training_file), "--no-load", "--quiet"]
    if options.taxonomy is not None:
        argv += ["--taxonomy", str(options.taxonomy)]
    if options.unlabelled is not None:
        argv += ["--unlabelled", str(options.unlabelled), "--rules", str(options.rules)]
    args = parser.parse_args(argv)
    repository = Path(settings.model_repository)
    before = set(version_dirs(repository, settings.categoriser_model))
    code = train_cli.run(args, settings)
    after = set(version_dirs(repository, settings.categoriser_model))
    if code != 0 or not after - before:
        raise RetrainError(
            f"training the challenger failed (exit {code}); see the messages above, fix the "
            "labels and run `catstream retrain` again"
        )
    return max(after - before)


def retrain_once(settings: Settings, options: argparse.Namespace) -> RetrainResult:
    repository = Path(settings.model_repository)
    name = settings.categoriser_model
    taxonomy = Taxonomy.load(options.taxonomy or settings.taxonomy_path)
    labels = latest_labels(settings)
    data = split_labels(labels, latest_items(settings, set(labels)), taxonomy)
    holdout_ids = {str(line["product_id"]) for line in data.holdout}
    training = data.training + file_lines(options.labels or [], holdout_ids)
    if len(data.holdout) < settings.retrain_min_holdout:
        raise RetrainError(
            f"only {len(data.holdout)} holdout labels (labels of random review samples); "
            f"a decision needs at least {settings.retrain_min_holdout} "
            "(CATSTREAM_RETRAIN_MIN_HOLDOUT): label more random samples in /review"
        )
    if not training:
        raise RetrainError("no training labels: label products in /review or pass --labels")
    try:
        champion: int | None = served_version(repository, name)
    except ModelVersionError:
        champion = None
    work = settings.home / "retrain"
    work.mkdir(parents=True, exist_ok=True)
    training_file = work / "training-labels.jsonl"
    training_file.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in training),
        encoding="utf-8",
    )
    challenger = train_challenger(settings, training_file, options)
    challenger_dir = model_dir(repository, name) / str(challenger)
    challenger_score = holdout_accuracy(challenger_dir, repository, data.holdout, settings)
    champion_score = (
        holdout_accuracy(
            model_dir(repository, name) / str(champion), repository, data.holdout, settings
        )
        if champion is not None
        else None
    )
    margin = settings.retrain_margin
    better = champion_score is None or challenger_score > champion_score + margin
    if champion_score is None:
        reason = "no champion was served"
    else:
        reason = (
            f"challenger {challenger_score:.4f} vs champion {champion_score:.4f} on "
            f"{len(data.holdout)} holdout labels: {'more' if better else 'not more'} than "
            f"{margin} better"
        )
    decision = ModelDecision(
        model_name=name,
        challenger_version=challenger,
        champion_version=champion,
        decision="promoted" if better else "kept_champion",
        served_version=challenger if better else (champion or challenger),
        champion_score=champion_score,
        challenger_score=challenger_score,
        margin=margin,
        holdout_size=len(data.holdout),
        training_labels=len(training),
        reason=reason,
    )
    _record(challenger_dir, decision)
    if better:
        versions = promote(settings, challenger, name)
        if options.no_load:
            write_version_policy(repository, versions, name, options.config_name)
        else:
            load_versions(settings, versions, options.config_name, name)
    else:
        challenger_dir = _set_aside(challenger_dir)
    publish_decision(settings, decision)
    log.info("retrain_decided", **decision.model_dump(exclude={"schema_version"}))
    return RetrainResult(decision, challenger_dir)


def _record(version_dir: Path, decision: ModelDecision) -> None:
    path = version_dir / METADATA_FILE
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["retrain"] = decision.model_dump(exclude={"schema_version"})
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(metadata, indent=1, ensure_ascii=False), encoding="utf-8")
    temporary.replace(path)


def _set_aside(version_dir: Path) -> Path:
    """Move a losing challenger out of the numbered versions (rollback never picks it)."""
    target = version_dir.parent / "rejected" / f"{version_dir.name}-{int(time.time())}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(version_dir), str(target))
    return target


def publish_decision(settings: Settings, decision: ModelDecision) -> None:
    producer = Producer(librdkafka_config(settings, **{"enable.idempotence": True}))
    # Keyed by model: one model's decisions share a partition, so readers see them in the
    # order they were made (keyed by version, a later decision could be read first).
    producer.produce(
        settings.topic("models"),
        key=decision.model_name.encode(),
        value=decision.model_dump_json().encode(),
    )
    if producer.flush(30):
        raise RetrainError(
            f"Kafka at {settings.kafka_bootstrap} did not acknowledge the decision on "
            f"{settings.topic('models')}; the model files are already updated — check "
            "`catstream stack status`"
        )
