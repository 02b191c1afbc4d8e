"""Temperature scaling, fitted on the validation split.

One scalar ``T`` per head divides the logits before the softmax (or sigmoid); it
changes confidence, never the ranking. ``T`` minimises the validation negative
log-likelihood, found by golden-section search over ``log T`` in float64 —
deterministic and dependency-free (the NLL is unimodal in ``log T`` in practice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.categoriser.scoring import sigmoid, softmax

__all__ = ["sigmoid", "softmax"]  # re-exported: the serving functions the fit uses

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def softmax_nll(logits: NDArray[Any], targets: NDArray[Any], temperature: float) -> float:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    picked = scaled[np.arange(len(targets)), targets]
    return float(np.mean(log_norm - picked))


def sigmoid_nll(
    logits: NDArray[Any], targets: NDArray[Any], weights: NDArray[Any], temperature: float
) -> float:
    scaled = logits.astype(np.float64) / temperature
    # log(1 + exp(-|x|)) + max(x, 0) - x*y: the stable binary cross-entropy
    loss = np.logaddexp(0.0, scaled) - scaled * targets
    total = float(weights.sum())
    return float((loss * weights).sum() / total) if total > 0 else 0.0


def _golden_section(objective: Callable[[float], float], low: float, high: float) -> float:
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = objective(c), objective(d)
    for _ in range(60):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = objective(d)
    return (a + b) / 2.0


def fit_softmax_temperature(logits: NDArray[Any], targets: NDArray[Any]) -> float:
    """T minimising the validation NLL of the exclusive head (1.0 without data)."""
    if len(targets) == 0:
        return 1.0
    log_t = _golden_section(
        lambda lt: softmax_nll(logits, targets, math.exp(lt)),
        math.log(MIN_TEMPERATURE),
        math.log(MAX_TEMPERATURE),
    )
    return round(math.exp(log_t), 6)


def fit_sigmoid_temperature(
    logits: NDArray[Any], targets: NDArray[Any], weights: NDArray[Any]
) -> float:
    """T minimising the weighted validation BCE of the independent head (1.0 without data)."""
    if float(weights.sum()) <= 0.0:
        return 1.0
    log_t = _golden_section(
        lambda lt: sigmoid_nll(logits, targets, weights, math.exp(lt)),
        math.log(MIN_TEMPERATURE),
        math.log(MAX_TEMPERATURE),
    )
    return round(math.exp(log_t), 6)
