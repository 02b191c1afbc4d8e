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
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from catstream.metrics import REVIEW_ITEMS
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
    """Uncertainty of one product's candidate scores (1-D), in [0, 1].

    Plain Python floats: for a handful of scores that is ~20x faster than numpy,
    and the agent calls this for every product. Same results as ``uncertainties``.
    """
    _check_measure(measure)
    raw = np.asarray(probabilities, dtype=np.float64).ravel().tolist()
    if any(math.isnan(v) for v in raw):
        raise ValueError("scores contain NaN; check the categoriser's outputs for this batch")
    values = sorted((min(max(v, 0.0), 1.0) for v in raw), reverse=True)
    total = sum(values)
    if total <= 0.0:
        return 1.0
    if measure == "margin":
        second = values[1] if len(values) > 1 else 0.0
        return min(max(1.0 - (values[0] - second), 0.0), 1.0)
    if measure == "probability":
        return 1.0 - values[0]
    if len(values) < 2:
        return 0.0
    entropy = -sum(v / total * math.log(v / total) for v in values if v > 0.0)
    return min(max(entropy / math.log(len(values)), 0.0), 1.0)


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
    merchant: str | None = None
    price: str | None = None
    currency: str | None = None


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


def to_review_item(
    candidate: ReviewCandidate, measure: str, random_sample: bool = False
) -> ReviewItem:
    """The ``products.review`` event for a candidate (at most 5 candidates, best first).

    ``random_sample``: it was drawn at random, not for its uncertainty; its label is
    holdout data for ``catstream retrain`` (never trained on).
    """
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
        merchant=candidate.merchant,
        price=candidate.price,
        currency=candidate.currency,
        random_sample=random_sample,
    )


class _SlidingBudget:
    """At most ``limit`` sends in any ``window_s`` seconds (no burst at window edges)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._sent_at: deque[float] = deque()

    def remaining(self, now: float) -> int:
        while self._sent_at and now - self._sent_at[0] >= self.window_s:
            self._sent_at.popleft()
        return max(self.limit - len(self._sent_at), 0)

    def spend(self, now: float) -> None:
        self._sent_at.append(now)


@dataclass(slots=True)
class _Sent:
    fingerprint: str
    sent_at: float
    sequence: int


class _RecentlySent:
    """What labellers were shown lately: embeddings in a ring buffer, products by id.

    The ring keeps the last ``capacity`` sent embeddings as one float32 matrix, so a
    batch is compared with all of them in one matmul. A product id is remembered
    while it is within the time window *or* its embedding is still in the ring,
    so the memory is bounded by ``capacity`` + the budget of one window.
    """

    def __init__(self, capacity: int, window_s: float) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self.matrix: NDArray[np.float32] | None = None
        self.owners: list[str | None] = [None] * capacity
        self.count = 0  # sends so far; slot = sequence % capacity
        self.products: dict[str, _Sent] = {}  # insertion order = send order

    def forget_old(self, now: float) -> None:
        oldest_in_ring = self.count - self.capacity
        while self.products:
            product_id, sent = next(iter(self.products.items()))
            if now - sent.sent_at < self.window_s or sent.sequence >= oldest_in_ring:
                break
            del self.products[product_id]

    def filled(self) -> NDArray[np.float32] | None:
        if self.matrix is None or self.count == 0:
            return None
        return self.matrix[: min(self.count, self.capacity)]

    def owner_mask(self, product_id: str, rows: int) -> NDArray[np.bool_]:
        """True at the first ``rows`` ring rows that hold an embedding of ``product_id``.

        ``rows`` is the ring size the batch's similarities were computed against:
        items sent earlier in the same batch are not part of that matrix.
        """
        return np.fromiter((o == product_id for o in self.owners[:rows]), bool, rows)

    def record(self, product_id: str, fingerprint: str, vector: NDArray[Any], now: float) -> None:
        if self.matrix is None:
            self.matrix = np.zeros((self.capacity, vector.shape[0]), dtype=np.float32)
        slot = self.count % self.capacity
        self.matrix[slot] = vector
        self.owners[slot] = product_id
        self.products.pop(product_id, None)  # re-insert: keep send order
        self.products[product_id] = _Sent(fingerprint, now, self.count)
        self.count += 1


def _unit_rows(candidates: Sequence[ReviewCandidate], dim: int | None) -> NDArray[np.float32]:
    rows = np.stack([np.asarray(c.embedding, dtype=np.float32).reshape(-1) for c in candidates])
    if dim is not None and rows.shape[1] != dim:
        raise ValueError(
            f"text embedding has {rows.shape[1]} dimensions, earlier ones had {dim}; "
            "restart the worker after changing the text encoder"
        )
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # Already L2-normalised in practice; dividing again is cheap and makes cosine exact.
    # A zero vector stays zero: similarity 0, never a duplicate.
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


@dataclass
class ReviewRouter:
    """Decides, per micro-batch, which products go to ``products.review``.

    Order of checks for each candidate: confident (the rule says no review and it
    was not drawn as a random sample) → duplicate (same product and fingerprint
    sent recently, or an embedding with cosine ≥ ``review_dedup_cosine`` to another
    product sent recently or earlier in the batch) → over_budget (the sliding
    window already holds ``review_budget_per_window`` sends) → sent.

    ``random_share`` (information density): that share of *confident* products is
    drawn, seeded, as representative samples; they spend budget only after every
    uncertain product of the batch, and their ``Decision.sampled`` is True.
    """

    settings: Settings
    clock: Callable[[], float] = time.monotonic
    random_share: float = 0.0
    seed: int | None = 0
    capacity: int = RECENT_CAPACITY
    measure: str = field(init=False)
    threshold: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_share <= 1.0:
            raise ValueError(f"random_share is {self.random_share}; give a share in [0, 1]")
        self.measure = self.settings.review_measure
        self.threshold = review_threshold(self.settings)
        self._budget = _SlidingBudget(
            self.settings.review_budget_per_window, self.settings.review_window_s
        )
        self._recent = _RecentlySent(self.capacity, self.settings.review_window_s)
        self._random = random.Random(self.seed)

    def needs_review(self, uncertainty: float, accepted: bool) -> bool:
        """The rule with this router's measure and threshold (for ``Prediction.needs_review``)."""
        return needs_review(self.measure, uncertainty, self.threshold, accepted)

    def offer(self, candidate: ReviewCandidate) -> Decision:
        return self.offer_batch([candidate])[0]

    def offer_batch(self, candidates: Sequence[ReviewCandidate]) -> list[Decision]:
        """One decision per candidate, in the order given.

        Budget goes to the most uncertain first: wanted candidates are considered by
        uncertainty, descending, then the random samples.
        """
        if not candidates:
            return []
        now = self.clock()
        self._recent.forget_old(now)
        decisions: list[Decision | None] = [None] * len(candidates)
        uncertain: list[int] = []
        sampled: list[int] = []
        for index, candidate in enumerate(candidates):
            if self.needs_review(_uncertainty_of(candidate), candidate.accepted):
                uncertain.append(index)
            elif self.random_share > 0.0 and self._random.random() < self.random_share:
                sampled.append(index)
            else:
                decisions[index] = Decision(candidate.product_id, "confident")
        uncertain.sort(key=lambda i: -_uncertainty_of(candidates[i]))
        sampled.sort(key=lambda i: -_uncertainty_of(candidates[i]))
        wanted = uncertain + sampled
        if wanted:
            chosen = [candidates[i] for i in wanted]
            routed = self._route(chosen, first_sampled=len(uncertain), now=now)
            for index, decision in zip(wanted, routed, strict=True):
                decisions[index] = decision
        final = [d for d in decisions if d is not None]
        for decision in final:
            label = "sampled" if decision.sampled and decision.sent else decision.outcome
            REVIEW_ITEMS.labels(outcome=label).inc()
        return final

    def _route(
        self, chosen: list[ReviewCandidate], first_sampled: int, now: float
    ) -> list[Decision]:
        known = self._recent.filled()
        vectors = _unit_rows(chosen, None if known is None else known.shape[1])
        near = _NearDuplicates(vectors, known, chosen, self.settings.review_dedup_cosine)
        result: list[Decision] = []
        for row, candidate in enumerate(chosen):
            is_sample = row >= first_sampled
            if self._is_duplicate(candidate, row, near):
                result.append(Decision(candidate.product_id, "duplicate", sampled=is_sample))
                continue
            if self._budget.remaining(now) <= 0:
                result.append(Decision(candidate.product_id, "over_budget", sampled=is_sample))
                continue
            self._budget.spend(now)
            item = to_review_item(candidate, self.measure, random_sample=is_sample)
            self._recent.record(candidate.product_id, candidate.fingerprint, vectors[row], now)
            near.sent[row] = True
            result.append(Decision(candidate.product_id, "sent", item, sampled=is_sample))
        return result

    def _is_duplicate(self, candidate: ReviewCandidate, row: int, near: _NearDuplicates) -> bool:
        previous = self._recent.products.get(candidate.product_id)
        if previous is not None and previous.fingerprint == candidate.fingerprint:
            return True
        if near.recent_hit[row]:
            if previous is None:
                return True
            # A changed product: its own earlier items do not make it a duplicate.
            own = self._recent.owner_mask(candidate.product_id, near.to_recent.shape[1])
            if bool((near.to_recent[row][~own] >= near.limit).any()):
                return True
        return bool(near.within_hit[row][near.sent].any())


class _NearDuplicates:
    """Which candidates of a batch are near (cosine ≥ limit) recent items or each other.

    Two matmuls per batch; the per-candidate checks are then boolean lookups.
    """

    def __init__(
        self,
        vectors: NDArray[np.float32],
        known: NDArray[np.float32] | None,
        chosen: Sequence[ReviewCandidate],
        limit: float,
    ) -> None:
        n = vectors.shape[0]
        self.limit = limit
        self.to_recent = vectors @ known.T if known is not None else np.zeros((n, 0), np.float32)
        self.recent_hit = (self.to_recent >= limit).any(axis=1)
        self.within_hit = (vectors @ vectors.T) >= limit
        np.fill_diagonal(self.within_hit, False)
        ids = [c.product_id for c in chosen]
        if len(set(ids)) < n:  # one product twice in a batch: the product rule decides
            owners = np.array(ids, dtype=object)
            self.within_hit &= owners[:, None] != owners[None, :]
        self.sent = np.zeros(n, dtype=bool)  # rows sent so far in this batch


def _uncertainty_of(candidate: ReviewCandidate) -> float:
    # NaN would compare False everywhere and hide a broken score: treat it as unsure.
    value = candidate.uncertainty
    return 1.0 if math.isnan(value) else value
