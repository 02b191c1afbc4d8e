"""Fine-tune MiniLM end to end on the labels (``catstream train --finetune``).

A linear head on the mean-pooled last layer, cross-entropy over the leaf classes,
AdamW (encoder lr 1e-4, head lr 2e-3, weight decay 0.01), 10% linear warm-up then
linear decay, batches of similar length (less padding). ``bench/dev_finetune.py``
measured this recipe on the development set.

The linear categoriser fuses it late: on products the fine-tuned encoder never saw
(a held-out fifth of the labels), the weight of its log-probabilities is the one
that maximises the fused leaf accuracy, and the temperature, in-domain scale and
served thresholds are fitted on the same fused, held-out scores
(``training.linear.train_linear``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.categoriser.finetuned import FineTunedClassifier

FUSION_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 3
    max_len: int = 64  # tokens; 99% of the dev set's "title | brand" fit in 45
    batch: int = 32
    encoder_lr: float = 1e-4
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    holdout_folds: int = 5  # one fifth of the labels chooses the fusion weight and calibrates
    threads: int = 2
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def length_batches(
    lengths: NDArray[Any], size: int, rng: np.random.Generator
) -> list[NDArray[Any]]:
    """Batches of similar length, drawn from shuffled windows of 50 batches, in random order."""
    order = rng.permutation(len(lengths))
    window = size * 50
    batches: list[NDArray[Any]] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    return [batches[i] for i in rng.permutation(len(batches))]


def fine_tune(
    sentences: Sequence[str],
    classes: NDArray[Any],
    n_classes: int,
    config: FineTuneConfig,
    say: Callable[[str], None] | None = None,
) -> FineTunedClassifier:
    """``classes[i]`` is the class index (0..n_classes-1) of ``sentences[i]``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    try:
        model = FineTunedClassifier(n_classes, config.max_len)
        lengths = np.asarray(
            [
                len(ids)
                for ids in model.tokenizer(
                    list(sentences), truncation=True, max_length=config.max_len
                )["input_ids"]
            ]
        )
        rng = np.random.default_rng(config.seed)
        steps = -(-len(sentences) // config.batch) * config.epochs
        warmup = max(1, int(config.warmup * steps))
        optimiser = torch.optim.AdamW(
            [
                {"params": model.encoder.parameters(), "lr": config.encoder_lr},
                {"params": model.head.parameters(), "lr": config.head_lr},
            ],
            weight_decay=config.weight_decay,
        )
        decay = max(1, steps - warmup)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / decay))
        )
        targets = torch.from_numpy(np.asarray(classes, dtype=np.int64))
        for epoch in range(config.epochs):
            model.train()
            started, losses = time.monotonic(), []
            for rows in length_batches(lengths, config.batch, rng):
                logits = model(model.tokens([sentences[i] for i in rows]))
                loss = torch.nn.functional.cross_entropy(logits, targets[rows])
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
            if say is not None:
                say(
                    f"fine-tune epoch {epoch + 1}/{config.epochs}: loss "
                    f"{float(np.mean(losses)):.3f}, {time.monotonic() - started:.1f}s"
                )
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def fusion_weight(
    linear: NDArray[Any], log_probabilities: NDArray[Any], classes: NDArray[Any]
) -> tuple[float, float]:
    """(weight, fused accuracy): the weight of ``FUSION_WEIGHTS`` with the best leaf accuracy
    of ``linear + weight * log_probabilities`` (ties: the smaller weight)."""
    best = (0.0, -1.0)
    for weight in FUSION_WEIGHTS:
        fused = linear + weight * log_probabilities
        accuracy = float((fused.argmax(axis=1) == classes).mean()) if len(classes) else 0.0
        if accuracy > best[1]:
            best = (weight, accuracy)
    return best
