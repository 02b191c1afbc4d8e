"""What the review app knows, rebuilt from Kafka: the queue, labels, predictions, models.

Pure and in memory: ``workers.review_feed`` applies every record of
``products.review``, ``products.labels``, ``products.predictions`` and
``products.models`` (from the beginning of each topic, so a restarted API rebuilds
the same state). All methods are called under the feed's lock.

* The **queue**: each product's latest review item that no label answers yet (a
  label answers an item when it was given at or after the item was created), oldest
  first. An item for a product that changed later supersedes the earlier one.
* The **serving order** (``serving_queue``): the order labellers are handed waiting
  items in, ``settings.review_order`` (default ``diverse_margin``, the
  active-learning benchmark's winner; ``workers.review_selection``). A diverse margin
  batch is chosen among the waiting items and served until none of it is left
  waiting; then the next batch is chosen from what is waiting then. Random samples
  (the retrain holdout) come first until ``min_holdout`` of them are labelled
  (``settings.retrain_min_holdout``: retrain cannot decide with fewer), then one in
  every ten.
* **Labels**: the latest per product (``products.labels`` is keyed by product; the
  latest label wins), and every label's time for the labels-per-hour count.
* **Prediction history**: the last ``HISTORY`` predictions per product, for at most
  ``MAX_PRODUCTS_WITH_HISTORY`` products (oldest-touched forgotten first).
* **The served version**: the latest of the last fresh prediction's version and the
  last ``catstream retrain`` decision's ``served_version``.
* **Holdout accuracy per model version**: for every label of a random review sample,
  whether the review item's top candidate (what that model version predicted) is the
  labelled category; and the ``products.models`` decisions of ``catstream retrain``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from catstream.taxonomy import Taxonomy, UnknownCategoryError
from schemas.events import Label, ModelDecision, Prediction, ReviewItem
from workers.review_selection import SAMPLE_EVERY, Order, next_batch, serving_order

HISTORY = 20
MAX_PRODUCTS_WITH_HISTORY = 50_000
LABEL_TIMES_KEPT = 100_000


@dataclass
class VersionScore:
    """Holdout (random-sample labels) accuracy of one model version, as the stream served it."""

    version: str
    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None


@dataclass
class ReviewState:
    taxonomy: Taxonomy
    items: dict[str, ReviewItem] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    history: OrderedDict[str, deque[Prediction]] = field(default_factory=OrderedDict)
    label_times: deque[int] = field(default_factory=lambda: deque(maxlen=LABEL_TIMES_KEPT))
    decisions: list[ModelDecision] = field(default_factory=list)
    served_version: str | None = None
    served_seen_at: int = 0
    order: Order = "diverse_margin"
    query_batch: int = 50
    batch: list[str] = field(default_factory=list)  # the diverse margin batch being served
    answered_since_sample: int = SAMPLE_EVERY - 1  # a random sample is due first
    min_holdout: int = 0  # random samples come first until this many are labelled
    holdout_labelled: set[str] = field(default_factory=set)
    # version -> score; product -> (version, correct) so a relabel replaces its vote
    _votes: dict[str, tuple[str, bool]] = field(default_factory=dict)

    # ------------------------------------------------------------ applying records

    def add_item(self, item: ReviewItem) -> None:
        previous = self.items.get(item.product_id)
        if previous is None or item.created_at >= previous.created_at:
            self.items[item.product_id] = item
            self._score(item.product_id)

    def add_label(self, label: Label) -> None:
        previous = self.labels.get(label.product_id)
        # The app applies its own labels at once; the same label read back from Kafka
        # later must not count twice.
        if previous is not None and (previous.labelled_at > label.labelled_at or previous == label):
            return
        self.labels[label.product_id] = label
        self.label_times.append(label.labelled_at)
        self.answered_since_sample = 0 if label.random_sample else self.answered_since_sample + 1
        if label.random_sample:
            self.holdout_labelled.add(label.product_id)
        self._score(label.product_id)

    def add_prediction(self, prediction: Prediction) -> None:
        history = self.history.pop(prediction.product_id, None) or deque(maxlen=HISTORY)
        history.append(prediction)
        self.history[prediction.product_id] = history
        while len(self.history) > MAX_PRODUCTS_WITH_HISTORY:
            self.history.popitem(last=False)
        if prediction.predicted_at >= self.served_seen_at and not prediction.carried_forward:
            self.served_version, self.served_seen_at = (
                prediction.model_version,
                prediction.predicted_at,
            )

    def add_decision(self, decision: ModelDecision) -> None:
        self.decisions.append(decision)
        # A promotion changes what is served before the next product is predicted (an idle
        # stream predicts nothing): the dashboard shows it at once.
        if decision.decided_at >= self.served_seen_at:
            self.served_version = str(decision.served_version)
            self.served_seen_at = decision.decided_at

    # ------------------------------------------------------------------- queries

    def answered(self, item: ReviewItem) -> bool:
        label = self.labels.get(item.product_id)
        return label is not None and label.labelled_at >= item.created_at

    def queue(self) -> list[ReviewItem]:
        """Unanswered review items, oldest first."""
        waiting = [i for i in self.items.values() if not self.answered(i)]
        return sorted(waiting, key=lambda i: (i.created_at, i.product_id))

    def serving_queue(self) -> list[ReviewItem]:
        """Unanswered review items in the order labellers are handed them (see above)."""
        waiting = self.queue()
        if self.order == "diverse_margin":
            ids = {i.product_id for i in waiting}
            if not any(product_id in ids for product_id in self.batch):
                self.batch = next_batch(waiting, self.query_batch)
        since = self.answered_since_sample
        if len(self.holdout_labelled) < self.min_holdout:  # retrain cannot decide yet
            since = SAMPLE_EVERY - 1
        return serving_order(waiting, self.order, self.batch, since)

    def sent_since(self, since_ms: int) -> int:
        return sum(1 for i in self.items.values() if i.created_at >= since_ms)

    def labels_per_hour(self, now_ms: int, hours: int = 24) -> list[int]:
        """Labels given in each of the last ``hours`` hours, oldest hour first."""
        counts = [0] * hours
        for at in self.label_times:
            age = (now_ms - at) // 3_600_000
            if 0 <= age < hours:
                counts[hours - 1 - int(age)] += 1
        return counts

    def version_scores(self) -> list[VersionScore]:
        scores: dict[str, VersionScore] = {}
        for version, correct in self._votes.values():
            score = scores.setdefault(version, VersionScore(version))
            score.total += 1
            score.correct += int(correct)
        return sorted(scores.values(), key=_version_order)

    def _score(self, product_id: str) -> None:
        item, label = self.items.get(product_id), self.labels.get(product_id)
        if item is None or label is None or not item.random_sample or not label.has_category:
            return
        if label.labelled_at < item.created_at or not item.candidates:
            return
        try:
            truth = self.taxonomy.resolve(label.category)
        except UnknownCategoryError:
            return
        self._votes[product_id] = (item.model_version, item.candidates[0].id == truth)


def _version_order(score: VersionScore) -> tuple[int, str]:
    return (int(score.version), "") if score.version.isdigit() else (1 << 30, score.version)
