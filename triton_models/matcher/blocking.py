"""Candidate generation ("blocking"), in-process, the way the matching agent does it.

The stream asks Milvus for a product's nearest text vectors and Elasticsearch
for products with the same model number or product code and for a title
``more_like_this``; this module does the same over records in memory (cosine
kNN, exact model-number/code hits, TF-IDF title cosine), and fuses the three
rankings by reciprocal rank (exact hits first). ``blocking_recall`` is the share
of true matches that land in a record's top-k candidates: the ceiling on the
matcher's recall in the stream.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer

from triton_models.matcher.features import MatchRecord, compact, fold

RRF_K = 60  # the usual reciprocal-rank-fusion constant
DEPTH = 200  # how deep each ranking is read


def exact_keys(record: MatchRecord) -> set[str]:
    """Keys two offers of one product share: model number, codes (compacted)."""
    keys = {f"code:{c}" for c in record.codes}
    model = compact(record.model_number)
    if len(model) >= 4:
        keys.add(f"model:{model}")
    return keys


class CandidateIndex:
    """Records to find candidates among; ``candidates`` ranks them for a query record."""

    def __init__(self, records: Sequence[MatchRecord]) -> None:
        self.records = list(records)
        self.vectors = np.asarray(
            [r.text_vector if r.text_vector is not None else () for r in self.records],
            dtype=np.float32,
        )
        self.tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
        self.titles = self.tfidf.fit_transform([fold(r.title) for r in self.records])
        self.by_key: dict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(self.records):
            for key in exact_keys(record):
                self.by_key[key].append(index)
        # A model number written in a title ("... hp q6511x toner") is found too.
        self.compact_titles = [compact(r.title) for r in self.records]

    def candidates(self, query: MatchRecord, k: int) -> list[MatchRecord]:
        return [self.records[i] for i in self.ranked(query)[:k]]

    def ranked(self, query: MatchRecord) -> list[int]:
        scores: dict[int, float] = defaultdict(float)
        for ranking in (self._vector_ranking(query), self._title_ranking(query)):
            for rank, index in enumerate(ranking):
                scores[index] += 1.0 / (RRF_K + rank + 1)
        for index in self._exact(query):
            scores[index] += 1.0
        ranked = sorted(scores, key=lambda i: -scores[i])
        return [i for i in ranked if self.records[i].product_id != query.product_id]

    def _vector_ranking(self, query: MatchRecord) -> list[int]:
        if query.text_vector is None or self.vectors.ndim != 2 or not len(self.vectors):
            return []
        return _top(self.vectors @ np.asarray(query.text_vector, dtype=np.float32))

    def _title_ranking(self, query: MatchRecord) -> list[int]:
        similarity = self.titles @ self.tfidf.transform([fold(query.title)]).T
        return _top(np.asarray(similarity.todense()).reshape(-1))

    def _exact(self, query: MatchRecord) -> set[int]:
        found = {i for key in exact_keys(query) for i in self.by_key.get(key, ())}
        model = compact(query.model_number)
        if len(model) >= 5:
            found.update(i for i, title in enumerate(self.compact_titles) if model in title)
        return found


def _top(scores: NDArray[Any]) -> list[int]:
    depth = min(DEPTH, len(scores))
    if depth == 0:
        return []
    top = np.argpartition(-scores, depth - 1)[:depth]
    return [int(i) for i in top[np.argsort(-scores[top])]]


def blocking_recall(
    queries: Iterable[MatchRecord],
    index: CandidateIndex,
    true_pairs: set[tuple[str, str]],
    ks: Sequence[int] = (5, 20, 100),
) -> dict[int, float]:
    """Share of ``true_pairs`` (query id, indexed id) whose indexed side is in the query's top-k."""
    by_query: dict[str, set[str]] = defaultdict(set)
    for left, right in true_pairs:
        by_query[left].add(right)
    found = dict.fromkeys(ks, 0)
    total = 0
    for query in queries:
        wanted = by_query.get(query.product_id)
        if not wanted:
            continue
        total += len(wanted)
        ranked = [index.records[i].product_id for i in index.ranked(query)[: max(ks)]]
        for k in ks:
            found[k] += len(wanted & set(ranked[:k]))
    return {k: (found[k] / total if total else 0.0) for k in ks}
