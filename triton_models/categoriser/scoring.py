"""Logits → calibrated, hierarchy-consistent scores and decisions.

One function, used by training (to fit the mix and thresholds on exactly what
will be served), by ``serving.Predictor`` (Triton and offline) and by tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.categoriser.hierarchy import Decision, LabelSpace, decide, mix_scores

TOP_K = 5


def softmax(logits: NDArray[Any], temperature: float = 1.0) -> NDArray[Any]:
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: NDArray[Any], temperature: float = 1.0) -> NDArray[Any]:
    scaled = logits.astype(np.float64) / temperature
    return 0.5 * (1.0 + np.tanh(0.5 * scaled))  # overflow-free form


@dataclass(frozen=True)
class ScoringParams:
    temperature_exclusive: float
    temperature_independent: float
    exclusive_weight: float  # 1.0: exclusive head only; 0.0: independent head only
    thresholds: NDArray[Any]  # float32 [labels]

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature_exclusive": self.temperature_exclusive,
            "temperature_independent": self.temperature_independent,
            "exclusive_weight": self.exclusive_weight,
            "thresholds": [round(float(t), 6) for t in self.thresholds],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringParams:
        return cls(
            temperature_exclusive=float(data["temperature_exclusive"]),
            temperature_independent=float(data["temperature_independent"]),
            exclusive_weight=float(data["exclusive_weight"]),
            thresholds=np.asarray(data["thresholds"], dtype=np.float32),
        )


@dataclass(frozen=True)
class Scored:
    scores: NDArray[Any]  # float32 [n, labels], label-map order
    decision: Decision


def score_logits(
    space: LabelSpace,
    params: ScoringParams,
    independent_logits: NDArray[Any],
    exclusive_logits: NDArray[Any],
    k: int = TOP_K,
    in_domain: NDArray[Any] | None = None,
) -> Scored:
    """Scores and decisions; ``in_domain`` ([n] in [0, 1]) scales every score of a row.

    Scaling a row by one factor keeps the hierarchy consistent (parent ≥ child)
    and pulls a product unlike the training data below the thresholds.
    """
    independent = sigmoid(independent_logits, params.temperature_independent)
    exclusive = softmax(exclusive_logits, params.temperature_exclusive)
    scores = mix_scores(
        space,
        independent.astype(np.float32),
        exclusive.astype(np.float32),
        params.exclusive_weight,
    )
    own = own_scores(space, params, independent, exclusive)
    if in_domain is not None:
        factor = np.clip(in_domain, 0.0, 1.0).reshape(-1, 1)
        scores = (scores * factor).astype(np.float32)
        own = (own * factor).astype(np.float32)
    return Scored(scores, decide(space, scores, params.thresholds, k, own))


def own_scores(
    space: LabelSpace, params: ScoringParams, independent: NDArray[Any], exclusive: NDArray[Any]
) -> NDArray[Any]:
    """[n, leaves]: each leaf-set member's own probability (not its subtree's), mixed as scores."""
    weight = params.exclusive_weight
    own = weight * exclusive.astype(np.float32)
    if weight < 1.0:
        own = own + (1.0 - weight) * independent[:, space.leaf_positions].astype(np.float32)
    return np.asarray(own, dtype=np.float32)
