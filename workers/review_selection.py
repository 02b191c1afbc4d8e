"""Which waiting review items a labeller sees next: diverse margin batches.

Pool-based active learning picks a *batch* of products to label between two
retrains. Picking the ``n`` most uncertain products ("margin", breaking ties) spends
much of a batch on near-copies of one confusing product: the same toy in five
colours teaches the model once. **Diverse margin** (Zhdanov 2019, "Diverse
mini-batch active learning") keeps margin's focus and spreads the batch:

1. pre-filter the ``CANDIDATE_FACTOR × n`` most uncertain products;
2. cluster them into ``n`` groups with k-means weighted by uncertainty, on their
   text vectors' top ``SVD_COMPONENTS`` principal axes;
3. take from each group the product nearest its centre, most uncertain first.

Text vectors (``review_vectors``) are hashed word 1–2-grams and char 2–5-grams of
title + brand, L2-normalised: stateless, so the review app computes them from a
``ReviewItem`` alone and the benchmark (``bench/active_learning.py``) uses the very
same function and ``diverse_margin`` code to choose the winning strategy. Nothing
here is fitted to one catalogue: the factor 10 is the paper's, the features are the
categoriser's usual text features.

``serving_order`` is what the review app hands out: the current batch (diverse
margin picks among the waiting items), then the other waiting items by uncertainty,
with one random review sample (the retrain holdout, oldest first) due after every
``SAMPLE_EVERY - 1`` other answers (the first one at once), so the holdout keeps
growing about as fast as the router samples it (``ReviewRouter(random_share=0.1)``)
and the benchmark's 10% random mix is what labellers do.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import HashingVectorizer

from schemas.events import ReviewItem

Order = Literal["diverse_margin", "margin", "oldest"]
ORDERS: tuple[Order, ...] = get_args(Order)
CANDIDATE_FACTOR = 10
SVD_COMPONENTS = 64
SAMPLE_EVERY = 10
HASH_FEATURES = 2**18

_WORDS = HashingVectorizer(
    ngram_range=(1, 2), n_features=HASH_FEATURES, alternate_sign=False, norm=None
)
_CHARS = HashingVectorizer(
    analyzer="char_wb",
    ngram_range=(2, 5),
    n_features=HASH_FEATURES,
    alternate_sign=False,
    norm=None,
)


def item_text(title: str | None, brand: str | None) -> str:
    return f"{title or ''} {brand or ''}".strip()


def review_vectors(texts: Sequence[str]) -> Any:
    """One L2-normalised sparse row per text (a scipy CSR matrix); stateless."""
    words = _WORDS.transform(texts)
    chars = _CHARS.transform(texts)
    both = sparse.hstack([_unit(words), _unit(chars)]).tocsr()
    return _unit(both)


def _unit(matrix: Any) -> Any:
    matrix = sparse.csr_matrix(matrix, dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix)


def diverse_margin(
    vectors: Any,
    uncertainty: NDArray[np.float64] | Sequence[float],
    n: int,
    seed: int = 0,
    factor: int = CANDIDATE_FACTOR,
) -> list[int]:
    """Row indices of ``n`` products to label next, most uncertain first (see above)."""
    values = np.nan_to_num(np.asarray(uncertainty, dtype=np.float64), nan=1.0)
    count = values.shape[0]
    if n <= 0 or count == 0:
        return []
    top = np.argsort(-values, kind="stable")[: min(count, factor * n)]
    if top.shape[0] <= n:
        return [int(i) for i in top]
    dense = _projection(vectors[top], SVD_COMPONENTS)
    weights = np.clip(values[top], 1e-6, None)
    with warnings.catch_warnings():  # identical rows give fewer distinct clusters: fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(dense, sample_weight=weights)
    distance = np.linalg.norm(dense - kmeans.cluster_centers_[kmeans.labels_], axis=1)
    chosen: list[int] = []
    for cluster in range(n):
        members = np.flatnonzero(kmeans.labels_ == cluster)
        if members.shape[0]:
            chosen.append(int(members[np.argmin(distance[members])]))
    if len(chosen) < n:  # empty clusters: fill with the most uncertain left over
        taken = set(chosen)
        chosen.extend(i for i in range(top.shape[0]) if i not in taken)
        chosen = chosen[:n]
    chosen.sort(key=lambda i: (-values[top[i]], i))
    return [int(top[i]) for i in chosen]


def _projection(rows: Any, components: int) -> NDArray[np.float64]:
    """Coordinates of ``rows`` on their top principal axes (uncentred), from the Gram matrix:
    exact, and cheap for the few hundred candidates of a batch whatever the vector width."""
    gram = np.asarray((rows @ rows.T).toarray(), dtype=np.float64)
    values, axes = np.linalg.eigh(gram)  # ascending
    keep = slice(max(values.shape[0] - components, 0), None)
    return np.asarray(axes[:, keep] * np.sqrt(np.clip(values[keep], 0.0, None)))


def by_uncertainty(items: Sequence[ReviewItem]) -> list[ReviewItem]:
    return sorted(items, key=lambda i: (-i.uncertainty, i.created_at, i.product_id))


def oldest_first(items: Sequence[ReviewItem]) -> list[ReviewItem]:
    return sorted(items, key=lambda i: (i.created_at, i.product_id))


def next_batch(items: Sequence[ReviewItem], n: int) -> list[str]:
    """Product ids of the diverse margin batch among ``items`` (random samples excluded)."""
    pool = [i for i in items if not i.random_sample]
    if not pool:
        return []
    vectors = review_vectors([item_text(i.title, i.brand) for i in pool])
    picked = diverse_margin(vectors, [i.uncertainty for i in pool], n)
    return [pool[i].product_id for i in picked]


def interleave_samples(
    primary: Sequence[ReviewItem],
    samples: Sequence[ReviewItem],
    every: int = SAMPLE_EVERY,
    first_at: int = 0,
) -> list[ReviewItem]:
    """``primary`` with one of ``samples`` at positions first_at, first_at + every, …;
    samples left over go last."""
    result: list[ReviewItem] = []
    queue = list(samples)
    due = max(first_at, 0)
    for item in primary:
        if queue and len(result) == due:
            result.append(queue.pop(0))
            due += every
        result.append(item)
    return result + queue


def serving_order(
    items: Sequence[ReviewItem],
    order: Order,
    batch: Sequence[str] = (),
    answered_since_sample: int = SAMPLE_EVERY - 1,
) -> list[ReviewItem]:
    """Waiting items in the order labellers are handed them.

    ``batch``: the current diverse margin batch (``next_batch``), served first in its
    own order; only used with ``order="diverse_margin"``. ``answered_since_sample``:
    answers since the last random sample was answered; the next sample is due after
    ``SAMPLE_EVERY - 1`` others (the default: due now).
    """
    if order == "oldest":
        return oldest_first(items)
    samples = oldest_first([i for i in items if i.random_sample])
    rest = by_uncertainty([i for i in items if not i.random_sample])
    if order == "diverse_margin" and batch:
        position = {product_id: rank for rank, product_id in enumerate(batch)}
        first = sorted(
            (i for i in rest if i.product_id in position), key=lambda i: position[i.product_id]
        )
        rest = first + [i for i in rest if i.product_id not in position]
    return interleave_samples(rest, samples, first_at=SAMPLE_EVERY - 1 - answered_since_sample)
