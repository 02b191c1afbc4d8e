"""The training loop: Wide & Deep on encoded examples, early stopping, calibration, thresholds.

Input is already-encoded data (``EncodedData``: hashed features, text and image
embeddings per example) so the loop itself is fast and deterministic; the CLI
does the encoding. The result (``TrainedModel``) holds everything export needs.

Reproducibility: one seed drives the split, the initial weights, dropout and
the batch order; calibration and threshold search are deterministic numpy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm import tqdm

from catstream.logs import get_logger
from catstream.progress import on_terminal
from training.calibration import (
    fit_sigmoid_temperature,
    fit_softmax_temperature,
)
from training.dataset import (
    DEFAULT_UNKNOWN_WEIGHT,
    Example,
    Split,
    Targets,
    build_targets,
    stratified_split,
    stratum,
)
from training.thresholds import choose_thresholds
from triton_models.categoriser.features import SparseBatch
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.network import NetworkConfig, WideAndDeep
from triton_models.categoriser.scoring import ScoringParams, score_logits

log = get_logger(__name__)

MIX_GRID = (1.0, 0.75, 0.5, 0.25, 0.0)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 13
    epochs: int = 60
    patience: int = 8
    batch_size: int = 32
    learning_rate: float = 2e-3
    wide_learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    wide_weight_decay: float = 1e-5
    n_buckets: int = 2**18
    wide_dim: int = 32
    hidden: int = 256
    dropout: float = 0.3
    input_dropout: float = 0.1
    wide_dropout: float = 0.5
    # Share of a product's hashed features dropped per step: robustness to unseen
    # words and spellings (a form of augmentation that needs no generator).
    feature_dropout: float = 0.4
    image_dropout: float = 0.2
    label_smoothing: float = 0.05
    independent_loss_weight: float = 1.0
    unknown_weight: float = DEFAULT_UNKNOWN_WEIGHT
    validation_fraction: float = 0.15
    test_fraction: float = 0.10
    target_precision: float = 0.9
    min_threshold_positives: int = 5
    # The network is small: one thread avoids thread hand-off costs that dominate
    # small ops (and that explode on a busy host), and pins float summation order.
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EncodedData:
    """Per-example model inputs, aligned with the examples list."""

    feature_ids: list[NDArray[Any]]  # int64 bucket ids per example
    feature_weights: list[NDArray[Any]]  # float32 weights per example
    text: NDArray[Any]  # float32 [n, 384]
    image: NDArray[Any]  # float32 [n, 1280] (zeros where absent)
    image_mask: NDArray[Any]  # float32 [n]

    def sparse(self, rows: Sequence[int] | NDArray[Any]) -> SparseBatch:
        ids = [self.feature_ids[r] for r in rows]
        offsets = np.cumsum([0, *(len(i) for i in ids[:-1])]).astype(np.int64)
        return SparseBatch(
            indices=np.concatenate(ids).astype(np.int64),
            offsets=offsets,
            weights=np.concatenate([self.feature_weights[r] for r in rows]).astype(np.float32),
        )


@dataclass
class TrainedModel:
    network: WideAndDeep
    space: LabelSpace
    scoring: ScoringParams
    config: TrainConfig
    network_config: NetworkConfig
    split: Split
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    threshold_fallback: float = 0.0
    threshold_fallback_categories: int = 0


def run_network(
    network: nn.Module, data: EncodedData, rows: NDArray[Any], batch_size: int = 256
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Eval-mode logits (independent, exclusive) for ``rows``."""
    network.eval()
    independent: list[NDArray[Any]] = []
    exclusive: list[NDArray[Any]] = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            ind, exc = network(*_tensors(data, chunk))
            independent.append(ind.numpy())
            exclusive.append(exc.numpy())
    if not independent:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(independent), np.concatenate(exclusive)


def _tensors(data: EncodedData, rows: NDArray[Any]) -> tuple[torch.Tensor, ...]:
    sparse = data.sparse(rows)
    return (
        torch.from_numpy(sparse.indices),
        torch.from_numpy(sparse.offsets),
        torch.from_numpy(sparse.weights),
        torch.from_numpy(data.text[rows]),
        torch.from_numpy(data.image[rows]),
        torch.from_numpy(data.image_mask[rows]),
    )


class _Loss:
    """Label-smoothed cross-entropy on human rows + weighted BCE on the independent head."""

    def __init__(self, targets: Targets, config: TrainConfig) -> None:
        self.exclusive = torch.from_numpy(targets.exclusive)
        self.independent = torch.from_numpy(targets.independent)
        self.weights = torch.from_numpy(targets.weights)
        self.config = config
        self.has_human = bool((targets.exclusive >= 0).any())

    def __call__(
        self, rows: NDArray[Any], independent: torch.Tensor, exclusive: torch.Tensor
    ) -> torch.Tensor:
        index = torch.from_numpy(rows)
        loss = torch.zeros(())
        if self.has_human:
            target = self.exclusive[index]
            human = target >= 0
            if bool(human.any()):
                loss = loss + nn.functional.cross_entropy(
                    exclusive[human], target[human], label_smoothing=self.config.label_smoothing
                )
        weights = self.weights[index]
        total = weights.sum()
        if float(total) > 0:
            bce = nn.functional.binary_cross_entropy_with_logits(
                independent, self.independent[index], weight=weights, reduction="sum"
            )
            loss = loss + self.config.independent_loss_weight * bce / total
        return loss


class WideTableAdam:
    """Lazy AdamW for the wide table: only the rows a batch touches are read and written.

    A dense optimiser would sweep all ``n_buckets × wide_dim`` values every step
    (seconds per step on 2 cores); a batch touches a few thousand rows. Weight
    decay is applied to the touched rows only ("lazy" decay, as in LazyAdam).
    """

    def __init__(self, table: torch.Tensor, lr: float, weight_decay: float) -> None:
        self.table = table
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = (0.9, 0.999)
        self.eps = 1e-8
        self.exp_avg = torch.zeros_like(table)
        self.exp_avg_sq = torch.zeros_like(table)
        self.steps = 0

    def gather(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(unique row ids, a trainable copy of those rows, indices into the copy)."""
        unique, inverse = torch.unique(indices, return_inverse=True)
        rows = self.table.detach()[unique].clone().requires_grad_(True)
        return unique, rows, inverse

    @torch.no_grad()
    def step(self, unique: torch.Tensor, rows: torch.Tensor) -> None:
        grad = rows.grad
        if grad is None:
            return
        self.steps += 1
        beta1, beta2 = self.betas
        exp_avg = self.exp_avg[unique].mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq = self.exp_avg_sq[unique].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        self.exp_avg[unique] = exp_avg
        self.exp_avg_sq[unique] = exp_avg_sq
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        denominator = (exp_avg_sq / correction2).sqrt_().add_(self.eps)
        values = rows.detach() * (1 - self.lr * self.weight_decay)
        values.addcdiv_(exp_avg, denominator, value=-self.lr / correction1)
        self.table.data[unique] = values


def _optimizers(
    network: WideAndDeep, config: TrainConfig
) -> tuple[WideTableAdam, torch.optim.Optimizer]:
    wide = WideTableAdam(network.wide.weight, config.wide_learning_rate, config.wide_weight_decay)
    rest = [p for name, p in network.named_parameters() if not name.startswith("wide.")]
    dense = torch.optim.AdamW(rest, lr=config.learning_rate, weight_decay=config.weight_decay)
    return wide, dense


def _epoch(
    network: WideAndDeep,
    data: EncodedData,
    rows: NDArray[Any],
    loss_fn: _Loss,
    optimizers: tuple[WideTableAdam, torch.optim.Optimizer],
    generator: torch.Generator,
    config: TrainConfig,
) -> float:
    network.train()
    wide_optimizer, dense_optimizer = optimizers
    order = rows[torch.randperm(len(rows), generator=generator).numpy()]
    total, batches = 0.0, 0
    for start in range(0, len(order), config.batch_size):
        chunk = order[start : start + config.batch_size]
        indices, offsets, weights, text, image, mask = _tensors(data, chunk)
        if config.image_dropout > 0 and bool(mask.any()):
            # Missing images are common at serving time: teach the model to cope.
            keep = torch.rand(len(chunk), generator=generator) >= config.image_dropout
            mask = mask * keep.float()
        if config.feature_dropout > 0:
            kept = torch.rand(len(weights), generator=generator) >= config.feature_dropout
            weights = weights * kept.float() / (1.0 - config.feature_dropout)
        unique, table_rows, local = wide_optimizer.gather(indices)
        wide = nn.functional.embedding_bag(
            local, table_rows, offsets, mode="sum", per_sample_weights=weights
        )
        independent, exclusive = network.heads(wide, text, image, mask)
        loss = loss_fn(chunk, independent, exclusive)
        dense_optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        dense_optimizer.step()
        wide_optimizer.step(unique, table_rows)
        total += float(loss.detach())
        batches += 1
    return total / max(batches, 1)


def _validation_loss(
    network: WideAndDeep, data: EncodedData, rows: NDArray[Any], loss_fn: _Loss
) -> float:
    if len(rows) == 0:
        return math.nan
    independent, exclusive = run_network(network, data, rows)
    with torch.no_grad():
        return float(loss_fn(rows, torch.from_numpy(independent), torch.from_numpy(exclusive)))


def train(
    examples: Sequence[Example],
    data: EncodedData,
    space: LabelSpace,
    config: TrainConfig,
    progress: bool = True,
) -> TrainedModel:
    """Train, early-stop on validation loss, calibrate, choose thresholds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(examples, data, space, config, progress)
    finally:
        torch.set_num_threads(threads)


def _train(
    examples: Sequence[Example],
    data: EncodedData,
    space: LabelSpace,
    config: TrainConfig,
    progress: bool,
) -> TrainedModel:
    started = time.monotonic()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    split = stratified_split(
        [stratum(e) for e in examples],
        config.validation_fraction,
        config.test_fraction,
        config.seed,
    )
    if len(split.train) == 0:
        raise ValueError("no training examples after the split; add labelled products")
    targets = build_targets(examples, space, config.unknown_weight)
    network_config = NetworkConfig(
        n_buckets=config.n_buckets,
        n_labels=len(space),
        n_leaves=len(space.leaf_ids),
        wide_dim=config.wide_dim,
        hidden=config.hidden,
        dropout=config.dropout,
        input_dropout=config.input_dropout,
        wide_dropout=config.wide_dropout,
    )
    network = WideAndDeep(network_config)
    optimizers = _optimizers(network, config)
    loss_fn = _Loss(targets, config)
    # Without a validation split, train for the full epochs and monitor the training loss.
    monitor = split.validation if len(split.validation) else split.train
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(network.state_dict())
    history: list[dict[str, float]] = []
    drawn = on_terminal(progress)
    bar = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch", disable=not drawn)
    for epoch in bar:
        train_loss = _epoch(network, data, split.train, loss_fn, optimizers, generator, config)
        val_loss = _validation_loss(network, data, monitor, loss_fn)
        history.append({"epoch": epoch, "train_loss": train_loss, "validation_loss": val_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=best_epoch)
        if progress and not drawn:  # not a terminal: one line per epoch, never a redraw
            log.info(
                "epoch",
                epoch=epoch,
                epochs=config.epochs,
                train_loss=round(train_loss, 4),
                validation_loss=round(val_loss, 4),
                best_epoch=best_epoch,
            )
        if val_loss < best_loss - 1e-5:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(network.state_dict())
        elif epoch - best_epoch >= config.patience:
            log.info("early_stop", epoch=epoch, best_epoch=best_epoch, best_loss=best_loss)
            break
    bar.close()
    network.load_state_dict(best_state)
    network.eval()

    calibration_rows = split.validation if len(split.validation) else split.train
    scoring, fallback, fallback_count = _calibrate(
        network, data, calibration_rows, targets, space, config
    )
    return TrainedModel(
        network=network,
        space=space,
        scoring=scoring,
        config=config,
        network_config=network_config,
        split=split,
        history=history,
        best_epoch=best_epoch,
        seconds=time.monotonic() - started,
        threshold_fallback=fallback,
        threshold_fallback_categories=fallback_count,
    )


def _calibrate(
    network: WideAndDeep,
    data: EncodedData,
    rows: NDArray[Any],
    targets: Targets,
    space: LabelSpace,
    config: TrainConfig,
) -> tuple[ScoringParams, float, int]:
    """Temperatures, head mix and thresholds, all from the calibration rows."""
    independent, exclusive = run_network(network, data, rows)
    human = targets.exclusive[rows] >= 0
    t_exclusive = fit_softmax_temperature(exclusive[human], targets.exclusive[rows][human])
    t_independent = fit_sigmoid_temperature(
        independent, targets.independent[rows], targets.weights[rows]
    )
    params = ScoringParams(
        temperature_exclusive=t_exclusive,
        temperature_independent=t_independent,
        exclusive_weight=1.0 if bool(human.any()) else 0.0,
        thresholds=np.full(len(space), 0.5, dtype=np.float32),
    )
    if bool(human.any()) and bool((targets.weights[rows] > 0.5).any()):
        params = _choose_mix(
            params, space, independent[human], exclusive[human], targets.exclusive[rows][human]
        )
    scores = score_logits(space, params, independent, exclusive).scores
    # Thresholds from what is known: human rows fully, rule rows on positives only.
    known = targets.weights[rows] >= 1.0
    report = choose_thresholds(
        np.where(known, scores, 0.0),
        targets.independent[rows] * known,
        config.target_precision,
        config.min_threshold_positives,
    )
    return (
        ScoringParams(
            temperature_exclusive=params.temperature_exclusive,
            temperature_independent=params.temperature_independent,
            exclusive_weight=params.exclusive_weight,
            thresholds=report.thresholds,
        ),
        report.fallback,
        report.fallback_categories,
    )


def _choose_mix(
    params: ScoringParams,
    space: LabelSpace,
    independent: NDArray[Any],
    exclusive: NDArray[Any],
    truth: NDArray[Any],
) -> ScoringParams:
    """The head mix with the best validation leaf accuracy (ties: more exclusive)."""
    leaf_positions = space.leaf_positions
    best, best_accuracy = params, -1.0
    for weight in MIX_GRID:
        candidate = ScoringParams(
            params.temperature_exclusive,
            params.temperature_independent,
            weight,
            params.thresholds,
        )
        scores = score_logits(space, candidate, independent, exclusive).scores
        predicted = np.argmax(scores[:, leaf_positions], axis=1)
        accuracy = float(np.mean(predicted == truth))
        if accuracy > best_accuracy + 1e-9:
            best, best_accuracy = candidate, accuracy
    return best
