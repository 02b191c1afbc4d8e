"""The pair model: features → gradient-boosted trees → P(same product), plus its threshold.

A trained model is a numbered version under ``<model_repository>/matcher/<N>/``
(the categoriser's layout, see ``triton_models/categoriser/export.py``):

- ``model.pkl``: the fitted ``PairFeaturizer`` (TF-IDF vocabularies) and the
  scikit-learn ``HistGradientBoostingClassifier``, pickled;
- ``metadata.json``: the feature names, the accept threshold (chosen on the
  validation split), the metrics, the training-data hash and the sha256 of
  ``model.pkl``, which ``load`` checks before unpickling anything;
- ``model.py``: a copy of ``triton_model.py``, so Triton's python backend serves
  the version (``triton_models/repository/matcher/config.pbtxt``; the worker
  scores through it, ``triton_models/matcher/client.py``).

``load_served`` reads the highest version in process (``evaluate-matcher``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier

from triton_models.matcher.features import FEATURE_NAMES, MatchRecord, PairFeaturizer
from triton_models.python_backend import install_model_py

MODEL_NAME = "matcher"
MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
METADATA_FORMAT = 1
TRITON_MODEL_SOURCE = Path(__file__).with_name("triton_model.py")


class MatcherVersionError(LookupError):
    """No usable matcher version; the message says what to run."""


class PairScorer(Protocol):
    """The pair model as matching and evaluation use it: in process (``PairModel``) or
    served by Triton (``triton_models.matcher.client.TritonPairModel``)."""

    threshold: float
    metadata: dict[str, Any]

    def score_pairs(self, pairs: Sequence[tuple[MatchRecord, MatchRecord]]) -> NDArray[Any]: ...


@dataclass
class PairModel:
    featurizer: PairFeaturizer
    classifier: HistGradientBoostingClassifier
    threshold: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)
    # The feature columns the classifier uses: those with two or more distinct values in
    # training (a benchmark without images or product codes leaves those all NaN).
    columns: list[int] = field(default_factory=lambda: list(range(len(FEATURE_NAMES))))

    @classmethod
    def fit(
        cls,
        featurizer: PairFeaturizer,
        features: NDArray[Any],
        labels: NDArray[Any],
        *,
        seed: int = 0,
    ) -> PairModel:
        classifier = HistGradientBoostingClassifier(
            max_iter=400,
            learning_rate=0.05,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            random_state=seed,
        )
        columns = [
            i
            for i in range(features.shape[1])
            if len(np.unique(features[:, i][~np.isnan(features[:, i])])) >= 2
        ]
        classifier.fit(features[:, columns], labels)
        return cls(featurizer, classifier, columns=columns)

    def scores(self, features: NDArray[Any]) -> NDArray[Any]:
        if len(features) == 0:
            return np.zeros(0, dtype=np.float32)
        chosen = features[:, self.columns]
        return np.asarray(self.classifier.predict_proba(chosen)[:, 1], dtype=np.float32)

    def score_pairs(self, pairs: Sequence[tuple[MatchRecord, MatchRecord]]) -> NDArray[Any]:
        return self.scores(self.featurizer.transform(pairs))

    def choose_threshold(self, scores: NDArray[Any], labels: NDArray[Any]) -> float:
        """The threshold with the best F1 on (validation) ``scores``; ties → the higher one."""
        best, best_f1 = 0.5, -1.0
        for threshold in np.round(np.arange(0.05, 0.96, 0.01), 2):
            f1 = binary_metrics(labels, scores >= threshold)["f1"]
            if f1 >= best_f1:
                best, best_f1 = float(threshold), f1
        self.threshold = best
        return best


def binary_metrics(labels: NDArray[Any], predicted: NDArray[Any]) -> dict[str, float]:
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    tp = float(np.sum(labels & predicted))
    fp = float(np.sum(~labels & predicted))
    fn = float(np.sum(labels & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def version_dirs(model_repository: Path) -> dict[int, Path]:
    root = model_repository / MODEL_NAME
    if not root.is_dir():
        return {}
    return {int(p.name): p for p in root.iterdir() if p.is_dir() and p.name.isdigit()}


def export_version(model: PairModel, model_repository: Path) -> Path:
    """Write ``<repository>/matcher/<N>/`` (N = highest + 1) atomically; returns it."""
    root = model_repository / MODEL_NAME
    root.mkdir(parents=True, exist_ok=True)
    version = max(version_dirs(model_repository), default=0) + 1
    staging = root / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        blob = pickle.dumps(
            {
                "featurizer": model.featurizer,
                "classifier": model.classifier,
                "columns": model.columns,
            }
        )
        (staging / MODEL_FILE).write_bytes(blob)
        metadata = {
            **model.metadata,
            "format": METADATA_FORMAT,
            "model_name": MODEL_NAME,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "features": list(FEATURE_NAMES),
            "used_features": [FEATURE_NAMES[i] for i in model.columns],
            "threshold": model.threshold,
            "model_sha256": hashlib.sha256(blob).hexdigest(),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1), encoding="utf-8")
        install_model_py(TRITON_MODEL_SOURCE, staging)
        target = root / str(version)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_version(path: Path) -> PairModel:
    """Read one version directory, refusing a model file whose hash is not the recorded one."""
    try:
        metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        blob = (path / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise MatcherVersionError(
            f"matcher version {path} is unreadable ({exc}); retrain it with "
            "`catstream train-matcher --pairs PAIRS.jsonl`"
        ) from exc
    if hashlib.sha256(blob).hexdigest() != metadata.get("model_sha256"):
        raise MatcherVersionError(
            f"{path / MODEL_FILE} does not match the sha256 in its metadata.json; the version "
            "was changed after export: retrain it with `catstream train-matcher`"
        )
    if list(metadata.get("features", [])) != list(FEATURE_NAMES):
        raise MatcherVersionError(
            f"matcher version {path} was trained on other features than this code computes; "
            "retrain it with `catstream train-matcher`"
        )
    parts = pickle.loads(blob)
    return PairModel(
        parts["featurizer"],
        parts["classifier"],
        float(metadata["threshold"]),
        metadata,
        columns=list(parts["columns"]),
    )


def load_served(model_repository: Path, version: int | None = None) -> PairModel:
    versions = version_dirs(model_repository)
    if not versions:
        raise MatcherVersionError(
            f"no matcher version under {model_repository / MODEL_NAME}; train one with "
            "`catstream train-matcher --pairs PAIRS.jsonl`"
        )
    chosen = version if version is not None else max(versions)
    if chosen not in versions:
        raise MatcherVersionError(
            f"matcher version {chosen} not found; versions on disk: {sorted(versions)}"
        )
    return load_version(versions[chosen])
