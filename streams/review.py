"""Review routing for active learning: which products a human labeller should see.

Pure logic, no Kafka: the inference agent calls it once per micro-batch and
publishes the ``ReviewItem`` events it returns to ``products.review``.

**Uncertainty** (``uncertainty(measure, probabilities)``, always in [0, 1], higher
is less sure) is computed from a product's candidate leaf scores, e.g. the
categoriser's top-5 ``TOP_SCORES`` (padding zeros are harmless):

* ``margin``      = 1 − (p1 − p2)  ("breaking ties": a tie is 1, a one-hot is 0)
* ``entropy``     = H(q) / ln(K), q the scores renormalised to sum 1, K how many
  scores were given (so compare thresholds only for the same K: the agent gives 5)
* ``probability`` = 1 − p1  (least confidence)

``margin`` and ``probability`` read the calibrated scores as they are; only
``entropy`` renormalises (it is a property of the shape of the distribution).
No information at all (empty, or all scores zero) is maximal uncertainty, 1.

**The rule** (``needs_review``): a product needs review when
``uncertainty > threshold`` (strictly) **or** when nothing passed the per-category
thresholds (``accepted`` is False: the categoriser's ``PREDICTED_ID`` is -1).

**Thresholds.** Simulated calibrated models (top-1 probability ~ Beta(a, 1), the rest
spread over a few confusers, K=5) send to review, at the defaults below:

==============  =========  ====================  ================  ===============
measure         threshold  confident (p1≈0.90)   good (p1≈0.85)    bad (p1≈0.52)
==============  =========  ====================  ================  ===============
margin          0.2        20%                   34%               83%
entropy         0.3        15%                   28%               80%
probability     0.2        14%                   27%               80%
==============  =========  ====================  ================  ===============

Entropy at 0.2 would send 31% of a confident model's products, hence its own
default. ``review_threshold(settings)`` uses ``settings.review_threshold`` when it
was set explicitly (environment or override) and ``default_threshold(measure)``
otherwise. Whatever the rule says, the ``ReviewRouter`` budget caps what labellers
see; a bad model only ever fills the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from catstream.settings import Settings
from schemas.events import CategoryScore, ReviewItem, now_ms

Measure = Literal["margin", "entropy", "probability"]
MEASURES: tuple[Measure, ...] = get_args(Measure)
Outcome = Literal["sent", "over_budget", "duplicate", "confident"]

EMBEDDING_DIM = 384
RECENT_CAPACITY = 2000
MAX_CANDIDATES = 5

_DEFAULT_THRESHOLDS: dict[str, float] = {"margin": 0.2, "entropy": 0.3, "probability": 0.2}


# ----------------------------------------------------------------- uncertainty


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(
            f"unknown review measure {measure!r}; set CATSTREAM_REVIEW_MEASURE to one of "
            f"{', '.join(MEASURES)}"
        )


def default_threshold(measure: str) -> float:
    """The threshold that sends a minority of a confident model's products (see above)."""
    _check_measure(measure)
    return _DEFAULT_THRESHOLDS[measure]


def review_threshold(settings: Settings) -> float:
    """``settings.review_threshold`` if set explicitly, else the measure's default."""
    if "review_threshold" in settings.model_fields_set:
        return settings.review_threshold
    return default_threshold(settings.review_measure)


def uncertainties(measure: str, probabilities: ArrayLike) -> NDArray[np.float64]:
    """Row-wise uncertainty of a ``[n, k]`` score matrix (any k ≥ 0), each in [0, 1]."""
    _check_measure(measure)
    scores = np.asarray(probabilities, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected a [products, scores] matrix, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; check the categoriser's outputs for this batch")
    scores = np.clip(scores, 0.0, 1.0)
    n, k = scores.shape
    uninformed = scores.sum(axis=1) <= 0.0
    if k == 0:
        return np.ones(n)
    ordered = -np.sort(-scores, axis=1)
    p1 = ordered[:, 0]
    p2 = ordered[:, 1] if k > 1 else np.zeros(n)
    if measure == "margin":
        result = 1.0 - (p1 - p2)
    elif measure == "probability":
        result = 1.0 - p1
    else:
        result = _normalised_entropy(scores)
    result[uninformed] = 1.0
    return np.clip(result, 0.0, 1.0)


def _normalised_entropy(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    k = scores.shape[1]
    if k < 2:
        return np.zeros(scores.shape[0])
    totals = scores.sum(axis=1, keepdims=True)
    q = np.divide(scores, totals, out=np.zeros_like(scores), where=totals > 0)
    # 0·log 0 = 0: take the log only where q > 0.
    logs = np.log(q, out=np.zeros_like(q), where=q > 0)
    return np.asarray(-(q * logs).sum(axis=1) / math.log(k))


def uncertainty(measure: str, probabilities: ArrayLike) -> float:
    """Uncertainty of one product's candidate scores (1-D), in [0, 1]."""
    scores = np.asarray(probabilities, dtype=np.float64).reshape(1, -1)
    return float(uncertainties(measure, scores)[0])


def needs_review(measure: str, uncertainty: float, threshold: float | None, accepted: bool) -> bool:
    """``uncertainty > threshold`` or nothing accepted; threshold None: the measure's default."""
    limit = default_threshold(measure) if threshold is None else threshold
    return (not accepted) or uncertainty > limit


# ----------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class ReviewCandidate:
    """One categorised product, as the inference agent offers it to the router."""

    product_id: str
    uncertainty: float
    accepted: bool  # something passed the per-category thresholds
    embedding: NDArray[Any]  # text embedding, L2-normalised, EMBEDDING_DIM
    fingerprint: str
    model_version: str
    candidates: Sequence[CategoryScore] = ()
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    raw_category: str | None = None
    image_urls: Sequence[str] = ()
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the router did with a candidate; ``item`` is set when it was sent."""

    product_id: str
    outcome: Outcome
    item: ReviewItem | None = None
    sampled: bool = False  # sent as a random (representative) sample, not for uncertainty

    @property
    def sent(self) -> bool:
        return self.outcome == "sent"


def to_review_item(candidate: ReviewCandidate, measure: str) -> ReviewItem:
    """The ``products.review`` event for a candidate (at most 5 candidates, best first)."""
    _check_measure(measure)
    ranked = sorted(candidate.candidates, key=lambda c: c.score, reverse=True)
    return ReviewItem(
        product_id=candidate.product_id,
        uncertainty=min(max(candidate.uncertainty, 0.0), 1.0),
        measure=measure,  # type: ignore[arg-type]  # checked above
        candidates=ranked[:MAX_CANDIDATES],
        model_version=candidate.model_version,
        fingerprint=candidate.fingerprint,
        title=candidate.title,
        description=candidate.description,
        brand=candidate.brand,
        raw_category=candidate.raw_category,
        image_urls=list(candidate.image_urls),
        url=candidate.url,
        created_at=now_ms(),
    )
