"""The linear categoriser: TF-IDF + MiniLM (+ image) → one linear SVM over the label classes.

Every feature reaches every class directly (no bottleneck): the sparse TF-IDF
columns and the dense embeddings are columns of one design matrix, and
scikit-learn's ``LinearSVC`` (liblinear, one-vs-rest) fits one weight vector
per class. An inner-node label is a class of its own.

What ships is refitted on *all* the labels given. Temperature, the in-domain
scale and the serving threshold are fitted on *cross-fitted* decision values
(each product scored by a model that never saw it), so they are honest about
unseen products.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from catstream.logs import get_logger

log = get_logger(__name__)

MISSING_CLASS_LOGIT = -10.0  # a class absent from a fold's training rows: never its argmax


@dataclass(frozen=True)
class LinearTrainConfig:
    c: float = 0.5  # LinearSVC C; the reference baseline's value
    text_weight: float = 1.0  # scale of the MiniLM columns against the L2-normed TF-IDF
    image_weight: float = 0.5
    folds: int = 3  # cross-fitting folds for calibration and thresholds
    # From this many labelled products on, one fold is held out and scored instead of
    # all of them: a third of 10,000 is plenty for calibration and thresholds, and
    # skipping the other fold fits halves training time at 20,000 products
    cross_fit_below: int = 10_000
    min_df: int = 1
    seed: int = 13
    max_iter: int = 2000
    # liblinear's one-vs-rest fits run in this many threads (it releases the GIL);
    # 0: one per CPU this process may use
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LinearWeights:
    """Class weights of each input block (float32), columns follow the class order.

    The TF-IDF block is sparse: each class's SVM weight vector is a sum of its
    support vectors, so a feature seen only in a few products has weights for
    the few classes those products are support vectors of, and the rest are
    exact zeros (91% of them at 20,000 products x 1,000 classes, where the dense
    block would be 1.8 GB). The zeros are dropped, nothing else.
    """

    sparse: Any  # scipy.sparse.csr_matrix [n_features, n_classes], float32
    text: NDArray[Any]  # [text_dim, n_classes]
    image: NDArray[Any]  # [image_dim, n_classes]
    bias: NDArray[Any]  # [n_classes]

    def logits(
        self, matrix: Any, text: NDArray[Any], image: NDArray[Any], mask: NDArray[Any]
    ) -> NDArray[Any]:
        masked = image * mask.reshape(-1, 1)
        out = (sp.csr_matrix(matrix, dtype=np.float32) @ self.sparse).toarray()
        return out + text @ self.text + masked @ self.image + self.bias


def design_matrix(
    matrix: Any,
    text: NDArray[Any],
    image: NDArray[Any],
    mask: NDArray[Any],
    config: LinearTrainConfig,
) -> Any:
    """``[TF-IDF | text_weight * text | image_weight * image * mask]`` as one CSR matrix."""
    blocks = [matrix, sp.csr_matrix(config.text_weight * text)]
    if bool(mask.any()):
        blocks.append(sp.csr_matrix(config.image_weight * image * mask.reshape(-1, 1)))
    return sp.hstack(blocks, format="csr", dtype=np.float64)


def fit_weights(
    matrix: Any,
    text: NDArray[Any],
    image: NDArray[Any],
    mask: NDArray[Any],
    classes: NDArray[Any],
    n_classes: int,
    config: LinearTrainConfig,
) -> LinearWeights:
    """One-vs-rest linear SVM; returns weights per block (a class without rows: never chosen)."""
    n_features = matrix.shape[1]
    text_dim, image_dim = text.shape[1], image.shape[1]
    text_w = np.zeros((text_dim, n_classes), dtype=np.float32)
    image_w = np.zeros((image_dim, n_classes), dtype=np.float32)
    bias = np.full(n_classes, MISSING_CLASS_LOGIT, dtype=np.float32)
    present = np.unique(classes)
    if len(present) == 1:
        bias[present[0]] = 0.0
        empty = sp.csr_matrix((n_features, n_classes), dtype=np.float32)
        return LinearWeights(empty, text_w, image_w, bias)
    design = design_matrix(matrix, text, image, mask, config)
    columns, coef, intercept = one_vs_rest(design, classes, config)
    # coef rows are classes in ``columns`` order; as [n_features, n_classes] in class order
    placed = sp.csr_matrix(
        (np.ones(len(columns), dtype=np.float32), (columns, np.arange(len(columns)))),
        shape=(n_classes, len(columns)),
    )
    sparse_w = sp.csr_matrix((placed @ coef[:, :n_features]).T, dtype=np.float32)
    dense = coef[:, n_features:].toarray()
    text_w[:, columns] = config.text_weight * dense[:, :text_dim].T
    if design.shape[1] > n_features + text_dim:
        image_w[:, columns] = config.image_weight * dense[:, text_dim:].T
    bias[columns] = intercept
    return LinearWeights(sparse_w, text_w, image_w, bias)


OTHER_CLASSES = -1  # the label a thread's fit gives the rows of classes it does not own
# liblinear hands back a dense float64 [classes, columns] coef per fit; classes are fitted
# in chunks that keep it under this size (one per thread), and stored sparse at once
COEF_CHUNK_BYTES = 128 * 1024 * 1024


def one_vs_rest(
    design: Any, classes: NDArray[Any], config: LinearTrainConfig
) -> tuple[NDArray[Any], Any, NDArray[Any]]:
    """(class ids, coef CSR [classes, features] float32, intercept) of a one-vs-rest SVM.

    One-vs-rest is one binary problem per class over every row, so the classes
    are dealt to threads: each thread fits its own classes against all other
    rows, labelled ``OTHER_CLASSES`` (its one extra problem is dropped), a chunk
    at a time. The result is the single fit's, up to solver tolerance.
    """
    present = np.unique(classes)
    threads = min(config.threads or len(os.sched_getaffinity(0)), len(present))
    if threads <= 1 or len(present) <= 2:
        groups = [present]
    else:
        groups = [present[start::threads] for start in range(threads)]
    # two classes are one binary problem: one fit, whatever the budget
    chunk = max(1, COEF_CHUNK_BYTES // (8 * max(design.shape[1], 1)))
    chunk = len(present) if len(present) <= 2 else chunk

    def fit_group(own: NDArray[Any]) -> tuple[NDArray[Any], Any, NDArray[Any]]:
        parts = [
            _fit_classes(design, classes, own[start : start + chunk], config)
            for start in range(0, len(own), chunk)
        ]
        return _stack(parts)

    if len(groups) == 1:
        return fit_group(groups[0])
    with ThreadPoolExecutor(len(groups), thread_name_prefix="liblinear") as pool:
        return _stack(list(pool.map(fit_group, groups)))


def _stack(
    parts: list[tuple[NDArray[Any], Any, NDArray[Any]]],
) -> tuple[NDArray[Any], Any, NDArray[Any]]:
    columns, coef, intercept = zip(*parts, strict=True)
    return np.concatenate(columns), sp.vstack(coef, format="csr"), np.concatenate(intercept)


def _fit_classes(
    design: Any, classes: NDArray[Any], own: NDArray[Any], config: LinearTrainConfig
) -> tuple[NDArray[Any], Any, NDArray[Any]]:
    from sklearn.svm import LinearSVC

    labels = np.where(np.isin(classes, own), classes, OTHER_CLASSES)
    svm = LinearSVC(C=config.c, max_iter=config.max_iter, random_state=config.seed)
    svm.fit(design, labels)
    fitted = np.asarray(svm.classes_, dtype=np.int64)
    coef = sp.csr_matrix(svm.coef_, dtype=np.float32)  # drops the exact zeros
    intercept = np.asarray(svm.intercept_, dtype=np.float32)
    if len(fitted) == 2:  # liblinear keeps one vector for two classes: the second's
        coef = sp.vstack([-coef, coef], format="csr")
        intercept = np.asarray([-intercept[0], intercept[0]], dtype=np.float32)
    keep = np.flatnonzero(fitted != OTHER_CLASSES)
    return fitted[keep], coef[keep], intercept[keep]


def fold_ids(classes: NDArray[Any], folds: int, seed: int) -> NDArray[Any]:
    """Stratified fold number per row: each class's rows dealt round-robin after a shuffle."""
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(classes), dtype=np.int64)
    offset = 0
    for label in np.unique(classes):
        rows = np.flatnonzero(classes == label)
        rng.shuffle(rows)
        assignment[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)  # spread singletons over the folds
    return assignment


@dataclass(frozen=True)
class CrossFitted:
    """Each scored row scored by a model that did not see it."""

    rows: NDArray[Any]  # int64 [scored]: every row, or one held-out fold's
    logits: NDArray[Any]  # float32 [scored, n_classes]
    similarity: NDArray[Any]  # float32 [scored]: max cosine to the other folds' text embeddings
    folds: NDArray[Any]  # int64 [n]

    def describe(self, n_labelled: int, folds: int) -> str:
        if len(self.rows) == n_labelled:
            return f"{folds}-fold cross-fitted predictions of {n_labelled} labelled products"
        return (
            f"predictions of a held-out fold ({len(self.rows)} of {n_labelled} labelled "
            f"products, 1 of {folds} folds)"
        )


FeatureFit = Callable[[NDArray[Any], NDArray[Any]], tuple[Any, Any]]


def cross_fit(
    features: FeatureFit,
    text: NDArray[Any],
    image: NDArray[Any],
    mask: NDArray[Any],
    classes: NDArray[Any],
    n_classes: int,
    config: LinearTrainConfig,
    on_fold: Callable[[int, float], None] | None = None,
) -> CrossFitted:
    """``features(train_rows, held_rows)`` → (train matrix, held matrix), fitted on train rows.

    Every fold is scored below ``config.cross_fit_below`` rows, only fold 0 from there on.
    """
    folds = fold_ids(classes, config.folds, config.seed)
    logits = np.zeros((len(classes), n_classes), dtype=np.float32)
    similarity = np.ones(len(classes), dtype=np.float32)
    scored = range(config.folds) if len(classes) < config.cross_fit_below else range(1)
    for fold in scored:
        started = time.monotonic()
        held = np.flatnonzero(folds == fold)
        train = np.flatnonzero(folds != fold)
        if len(held) == 0 or len(train) == 0:
            continue
        train_matrix, held_matrix = features(train, held)
        weights = fit_weights(
            train_matrix, text[train], image[train], mask[train], classes[train], n_classes, config
        )
        logits[held] = weights.logits(held_matrix, text[held], image[held], mask[held])
        similarity[held] = max_similarity(text[held], text[train])
        if on_fold is not None:
            on_fold(fold, time.monotonic() - started)
    rows = np.flatnonzero(np.isin(folds, list(scored)))
    return CrossFitted(rows, logits[rows], similarity[rows], folds)


def max_similarity(
    queries: NDArray[Any], reference: NDArray[Any], chunk: int = 2048
) -> NDArray[Any]:
    """Max cosine similarity of each (normalised) query to the (normalised) reference rows."""
    if len(reference) == 0:
        return np.ones(len(queries), dtype=np.float32)
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk] @ reference.T
        out[start : start + chunk] = block.max(axis=1)
    return out


# ------------------------------------------------------------- the whole fit

IN_DOMAIN_QUANTILE = 0.05  # 95% of held-out in-domain products keep their full scores
IN_DOMAIN_WIDTH = 0.2  # cosine below that quantile at which the factor reaches 0


@dataclass
class LinearModel:
    """Everything export needs: features, weights, scoring, and the held-out evidence."""

    features: Any  # triton_models.categoriser.features.TfidfFeatures
    weights: LinearWeights
    space: Any  # LabelSpace
    scoring: Any  # ScoringParams
    in_domain: Any  # InDomain
    served: Any  # thresholds.ServedPoint on the cross-fitted predictions
    curve: list[Any]  # thresholds.ServedPoint per candidate threshold (cross-fitted)
    held_out: dict[str, Any]  # cross-fitted metrics
    reference: NDArray[Any]  # training text embeddings (for the in-domain score)
    config: LinearTrainConfig
    target_precision: float
    n_labelled: int
    seconds: float
    fold_seconds: list[float]


def train_linear(
    fields: list[Any],
    text: NDArray[Any],
    image: NDArray[Any],
    mask: NDArray[Any],
    truth: list[int],
    space: Any,
    config: LinearTrainConfig,
    target_precision: float,
    progress: Callable[[str], None] | None = None,
) -> LinearModel:
    """Cross-fit (calibration, in-domain scale, threshold), then refit on every labelled row.

    ``fields`` are ``ProductFields`` and ``truth`` the label ids (leaf-set members
    of ``space``), one per labelled product.
    """
    from training.calibration import fit_softmax_temperature
    from training.evaluation import expected_calibration_error
    from training.served_thresholds import choose_served_thresholds, depth_curves
    from training.thresholds import path_table, precision_curve
    from triton_models.categoriser.features import TfidfFeatures
    from triton_models.categoriser.in_domain import InDomain
    from triton_models.categoriser.scoring import ScoringParams, score_logits

    started = time.monotonic()
    say = progress or (lambda _line: None)
    leaf_index = {leaf: i for i, leaf in enumerate(space.leaf_ids)}
    classes = np.asarray([leaf_index[t] for t in truth], dtype=np.int64)
    n_classes = len(space.leaf_ids)
    fold_seconds: list[float] = []

    def fold_features(train_rows: NDArray[Any], held_rows: NDArray[Any]) -> tuple[Any, Any]:
        fitted = TfidfFeatures.fit([fields[r] for r in train_rows], min_df=config.min_df)
        train_part = fitted.transform([fields[r] for r in train_rows]).matrix
        return train_part, fitted.transform([fields[r] for r in held_rows]).matrix

    def on_fold(fold: int, seconds: float) -> None:
        fold_seconds.append(round(seconds, 1))
        say(f"cross-fit fold {fold + 1}/{config.folds}: {seconds:.1f}s")

    crossed = cross_fit(
        fold_features, text, image, mask, classes, n_classes, config, on_fold=on_fold
    )
    held_classes = classes[crossed.rows]
    held_truth = [truth[r] for r in crossed.rows]
    temperature = fit_softmax_temperature(crossed.logits, held_classes)
    in_domain = InDomain.fit(crossed.similarity, IN_DOMAIN_QUANTILE, IN_DOMAIN_WIDTH)
    provisional = ScoringParams(
        temperature_exclusive=temperature,
        temperature_independent=1.0,
        exclusive_weight=1.0,
        thresholds=np.ones(len(space), dtype=np.float32),
    )
    zeros = np.zeros((len(held_classes), len(space)), dtype=np.float32)
    held = score_logits(
        space, provisional, zeros, crossed.logits, in_domain=in_domain.factor(crossed.similarity)
    )
    own = held.decision.top_scores[:, 0]
    table = path_table(
        space,
        held.scores,
        held_truth,
        _own(space, provisional, crossed.logits, in_domain, crossed.similarity),
    )
    chosen = choose_served_thresholds(space, table, target_precision)
    served = chosen.held_out
    curve = precision_curve(table, size=40)
    top = held.decision.top_ids[:, 0]
    hits = (top == np.asarray(held_truth)).astype(np.float64)
    held_out = {
        "leaf_accuracy": float(hits.mean()) if len(hits) else 0.0,
        "ece": expected_calibration_error(list(own), list(hits > 0.5)),
        "served": served.to_dict(),
        "thresholds": chosen.to_dict(),
        "depth_curves": depth_curves(table, space, chosen),
        "fit": crossed.describe(len(classes), config.folds),
    }
    say(
        f"held out: leaf accuracy {held_out['leaf_accuracy']:.3f}, ECE {held_out['ece']:.3f}, "
        f"threshold {served.threshold:.3f} → precision {served.precision:.3f}, "
        f"served {served.served:.3f}, at the leaf {served.leaf_coverage:.3f}"
    )
    refit_started = time.monotonic()
    features = TfidfFeatures.fit(fields, min_df=config.min_df)
    matrix = features.transform(fields).matrix
    weights = fit_weights(matrix, text, image, mask, classes, n_classes, config)
    say(f"refit on all {len(classes)} labelled products: {time.monotonic() - refit_started:.1f}s")
    scoring = ScoringParams(
        temperature_exclusive=temperature,
        temperature_independent=1.0,
        exclusive_weight=1.0,
        thresholds=chosen.thresholds,
    )
    return LinearModel(
        features=features,
        weights=weights,
        space=space,
        scoring=scoring,
        in_domain=in_domain,
        served=served,
        curve=curve,
        held_out=held_out,
        reference=np.ascontiguousarray(text, dtype=np.float32),
        config=config,
        target_precision=target_precision,
        n_labelled=len(classes),
        seconds=time.monotonic() - started,
        fold_seconds=fold_seconds,
    )


def _own(
    space: Any, params: Any, logits: NDArray[Any], in_domain: Any, similarity: NDArray[Any]
) -> NDArray[Any]:
    from triton_models.categoriser.scoring import softmax

    probabilities = softmax(logits, params.temperature_exclusive).astype(np.float32)
    return probabilities * in_domain.factor(similarity).reshape(-1, 1)


def build_network(model: LinearModel) -> Any:
    """The served TorchScript module holding the refitted weights."""
    import torch

    from triton_models.categoriser.network import (
        LinearCategoriser,
        LinearConfig,
        SplitWeights,
        script_linear,
    )

    config = network_config(model)
    sparse = model.weights.sparse
    if sparse.shape[0] == 0:  # no TF-IDF features: an empty product's zero-weight feature 0
        sparse = sp.csr_matrix((1, sparse.shape[1]), dtype=np.float32)
    split = SplitWeights.from_csr(
        torch.from_numpy(sparse.indptr.astype(np.int64)),
        torch.from_numpy(sparse.indices.astype(np.int32)),
        torch.from_numpy(sparse.data.astype(np.float32)),
        sparse.shape[1],
    )
    network = LinearCategoriser(
        config,
        split,
        torch.from_numpy(model.weights.text),
        torch.from_numpy(model.weights.image),
        torch.from_numpy(model.weights.bias),
        torch.from_numpy(model.reference),
    )
    assert isinstance(config, LinearConfig)
    return script_linear(network)


def network_config(model: LinearModel) -> Any:
    from triton_models.categoriser.network import LinearConfig

    return LinearConfig(
        n_features=model.features.n_features,
        n_labels=len(model.space),
        n_leaves=len(model.space.leaf_ids),
        n_reference=len(model.reference),
        text_dim=model.weights.text.shape[0],
        image_dim=model.weights.image.shape[0],
    )
