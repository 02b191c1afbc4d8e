"""Hashed sparse features for the wide part of the categoriser.

Word unigrams and bigrams plus character 3–5-grams (inside word boundaries, so
"sneakrs" still shares most grams with "sneakers") of the title, the brand and
the feed's raw category, each prefixed with its field so "apple" the brand and
"apple" in a title are different features. Every feature is hashed with CRC32
(stable across processes, unlike ``hash()``) into a fixed number of buckets, so
the model needs no vocabulary file and training and serving cannot drift.

Each field's features are weighted ``field_weight / sqrt(count)`` so that a
long title does not drown the brand, and a product's sparse vector has a
similar norm whatever its length. The output is what ``torch.nn.EmbeddingBag``
takes: flat indices, per-product offsets and per-index weights.

``TfidfFeatures`` is the vocabulary alternative the linear categoriser uses:
scikit-learn's word 1–2-gram and char_wb 2–5-gram TF-IDF, fitted in training and
stored beside the network. Serving counts each field group once and takes the
share of grams the vocabulary knows (``known_share``) from those same counts.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_BUCKETS = 2**18
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
# Split only on the path delimiters feeds use; the normaliser joins with " > ".
_CATEGORY_SEGMENTS = re.compile(r"\s*(?:>|›|»|/|\||\\)\s*")


@dataclass(frozen=True, slots=True)
class ProductFields:
    """The text the sparse features see: normalised title, brand, raw category, description."""

    title: str = ""
    brand: str = ""
    raw_category: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class SparseBatch:
    """A batch of hashed features, in ``EmbeddingBag`` layout."""

    indices: NDArray[Any]  # int64 [total features]
    offsets: NDArray[Any]  # int64 [batch]: where each product's features start
    weights: NDArray[Any]  # float32 [total features]

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, any script)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _TOKEN.findall(folded)


def char_ngrams(word: str, sizes: Sequence[int] = (3, 4, 5)) -> list[str]:
    """Character n-grams of one word with ``<`` ``>`` boundary marks."""
    marked = f"<{word}>"
    grams: list[str] = []
    for n in sizes:
        if len(marked) < n:
            continue
        grams.extend(marked[i : i + n] for i in range(len(marked) - n + 1))
    return grams


def _text_features(prefix: str, words: list[str]) -> list[str]:
    features = [f"{prefix}w:{w}" for w in words]
    features.extend(f"{prefix}b:{a} {b}" for a, b in itertools.pairwise(words))
    for word in words:
        # Digits-only tokens (sizes, model numbers) carry little category signal as grams.
        if not word.isdigit():
            features.extend(f"{prefix}c:{g}" for g in char_ngrams(word))
    return features


def field_features(fields: ProductFields) -> list[tuple[list[str], float]]:
    """Feature strings per field, with each field's weight."""
    groups: list[tuple[list[str], float]] = []
    title_words = tokens(fields.title)
    if title_words:
        groups.append((_text_features("t", title_words), 1.0))
    brand_words = tokens(fields.brand)
    if brand_words:
        brand = [f"bf:{' '.join(brand_words)}", *(f"bw:{w}" for w in brand_words)]
        groups.append((brand, 0.5))
    if fields.raw_category.strip():
        segments = [s for s in _CATEGORY_SEGMENTS.split(fields.raw_category) if s.strip()]
        category_words = tokens(fields.raw_category)
        category = [f"cs:{' '.join(tokens(s))}" for s in segments]
        category.extend(_text_features("c", category_words))
        groups.append((category, 1.0))
    return groups


def bucket(feature: str, n_buckets: int) -> int:
    return zlib.crc32(feature.encode("utf-8")) % n_buckets


class FeatureHasher:
    """Turns product fields into hashed, weighted sparse features."""

    def __init__(self, n_buckets: int = DEFAULT_BUCKETS) -> None:
        if n_buckets < 2:
            raise ValueError(f"n_buckets must be at least 2, got {n_buckets}")
        self.n_buckets = n_buckets

    def product(self, fields: ProductFields) -> tuple[list[int], list[float]]:
        """Bucket ids and weights of one product (duplicates merged)."""
        weights: defaultdict[int, float] = defaultdict(float)
        for features, field_weight in field_features(fields):
            scale = field_weight / math.sqrt(len(features))
            for feature in features:
                weights[bucket(feature, self.n_buckets)] += scale
        ids = sorted(weights)
        return ids, [weights[i] for i in ids]

    def batch(self, products: Iterable[ProductFields]) -> SparseBatch:
        indices: list[int] = []
        weights: list[float] = []
        offsets: list[int] = []
        for fields in products:
            offsets.append(len(indices))
            ids, values = self.product(fields)
            if not ids:
                # EmbeddingBag gives an empty bag zeros; one padding feature keeps
                # offsets strictly valid and contributes nothing (weight 0).
                ids, values = [0], [0.0]
            indices.extend(ids)
            weights.extend(values)
        return SparseBatch(
            indices=np.asarray(indices, dtype=np.int64),
            offsets=np.asarray(offsets, dtype=np.int64),
            weights=np.asarray(weights, dtype=np.float32),
        )


# ---------------------------------------------------------------- TF-IDF features

DESCRIPTION_CHARS = 500  # a description is capped: its first sentences name the product


@dataclass(frozen=True)
class FeatureGroup:
    """One TF-IDF block: which text, which n-grams, its vocabulary and idf, its weight."""

    name: str  # "words" / "chars" (title, brand, raw category) or "description"
    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    weight: float
    vocabulary: tuple[str, ...] = ()
    idf: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "analyzer": self.analyzer,
            "ngram_range": list(self.ngram_range),
            "weight": self.weight,
            "vocabulary": list(self.vocabulary),
            "idf": [round(float(v), 6) for v in self.idf],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureGroup:
        low, high = data["ngram_range"]
        return cls(
            name=str(data["name"]),
            analyzer=str(data["analyzer"]),
            ngram_range=(int(low), int(high)),
            weight=float(data["weight"]),
            vocabulary=tuple(str(v) for v in data["vocabulary"]),
            idf=tuple(float(v) for v in data["idf"]),
        )


DEFAULT_GROUPS = (
    FeatureGroup("words", "word", (1, 2), 1.0),
    FeatureGroup("chars", "char_wb", (2, 5), 1.0),
    FeatureGroup("description", "word", (1, 2), 0.5),
)


def _term_counts(vectorizer: Any, texts: list[str]) -> Any:
    """Raw in-vocabulary n-gram counts (CSR), before tf-idf weighting."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer.transform(vectorizer, texts)


def _tfidf(counts: Any, idf: NDArray[Any]) -> Any:
    """What ``TfidfVectorizer.transform`` makes of ``counts``: sublinear tf × idf, L2 rows."""
    from sklearn.preprocessing import normalize

    weighted = counts.astype(np.float32)
    np.log(weighted.data, out=weighted.data)
    weighted.data += 1.0
    weighted.data *= idf[weighted.indices]
    return normalize(weighted, norm="l2", copy=False)


_SPACES = re.compile(r"\s\s+")


def char_wb_gram_count(text: str, ngram_range: tuple[int, int]) -> int:
    """How many grams scikit-learn's ``char_wb`` analyzer yields for ``text``, found by
    arithmetic instead of building them (its rule: each word padded with one space a
    side; a word no longer than n yields itself once, and stops the larger sizes)."""
    low, high = ngram_range
    total = 0
    for word in _SPACES.sub(" ", text.lower()).split():
        length = len(word) + 2
        for n in range(low, high + 1):
            if length <= n:
                total += 1
                break
            total += length - n + 1
    return total


def _known_share(counts: Any, texts: list[str], ngram_range: tuple[int, int]) -> NDArray[Any]:
    known = np.asarray(counts.sum(axis=1), dtype=np.float64).reshape(-1)
    totals = np.asarray([char_wb_gram_count(t, ngram_range) for t in texts], dtype=np.float64)
    shares = np.ones(len(texts), dtype=np.float32)
    seen = totals > 0
    shares[seen] = (known[seen] / totals[seen]).astype(np.float32)
    return shares


def group_text(group: FeatureGroup, fields: ProductFields) -> str:
    """The text a group reads: the description (capped) or title, brand and raw category."""
    if group.name == "description":
        return fields.description[:DESCRIPTION_CHARS]
    return " ".join(p for p in (fields.title, fields.brand, fields.raw_category) if p.strip())


@dataclass(frozen=True, slots=True)
class TfidfRows:
    """Sparse TF-IDF rows (CSR parts over the concatenated groups) and in-vocabulary shares."""

    matrix: Any  # scipy.sparse.csr_matrix [n, n_features], float32
    known_share: NDArray[Any]  # float32 [n]: share of the title/brand n-grams in the vocabulary

    def batch(self) -> SparseBatch:
        """The rows in ``EmbeddingBag`` layout (an empty row gets one zero-weight feature)."""
        matrix = self.matrix
        counts = np.diff(matrix.indptr)
        indices: list[NDArray[Any]] = []
        weights: list[NDArray[Any]] = []
        for row, count in enumerate(counts):
            start, end = matrix.indptr[row], matrix.indptr[row + 1]
            if count == 0:
                indices.append(np.zeros(1, dtype=np.int64))
                weights.append(np.zeros(1, dtype=np.float32))
            else:
                indices.append(matrix.indices[start:end].astype(np.int64))
                weights.append(matrix.data[start:end].astype(np.float32))
        sizes = np.asarray([len(i) for i in indices], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        return SparseBatch(
            indices=np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64),
            offsets=offsets if len(indices) else np.zeros(0, dtype=np.int64),
            weights=np.concatenate(weights) if weights else np.zeros(0, dtype=np.float32),
        )


class TfidfFeatures:
    """TF-IDF over fixed vocabularies (word 1–2-grams, char_wb 2–5-grams, description words).

    Each group is scikit-learn's ``TfidfVectorizer`` (sublinear tf, idf from the
    training products, L2 norm per group) times the group's weight; the groups
    are concatenated. ``fit`` learns vocabularies and idf; ``from_dict`` rebuilds
    exactly the same transform for serving, so training and Triton agree.
    """

    def __init__(self, groups: Sequence[FeatureGroup]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.groups = tuple(groups)
        self._vectorizers: list[Any] = []
        for group in self.groups:
            if not group.vocabulary:
                self._vectorizers.append(None)
                continue
            vectorizer = TfidfVectorizer(
                analyzer=group.analyzer,
                ngram_range=group.ngram_range,
                sublinear_tf=True,
                dtype=np.float32,
                vocabulary={term: i for i, term in enumerate(group.vocabulary)},
            )
            vectorizer.idf_ = np.asarray(group.idf, dtype=np.float64)
            self._vectorizers.append(vectorizer)
        # The title/brand character grams: what "known" (in-domain) is measured on.
        self._known_vectorizer = next(
            (v for g, v in zip(self.groups, self._vectorizers, strict=True) if g.name == "chars"),
            None,
        )

    @property
    def n_features(self) -> int:
        return sum(len(g.vocabulary) for g in self.groups)

    @classmethod
    def fit(
        cls,
        fields: Sequence[ProductFields],
        groups: Sequence[FeatureGroup] = DEFAULT_GROUPS,
        min_df: int = 1,
    ) -> TfidfFeatures:
        """Vocabularies and idf from the training products (a group with no text is left out)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        fitted: list[FeatureGroup] = []
        for group in groups:
            texts = [group_text(group, f) for f in fields]
            if not any(t.strip() for t in texts):
                continue
            vectorizer = TfidfVectorizer(
                analyzer=group.analyzer,
                ngram_range=group.ngram_range,
                sublinear_tf=True,
                min_df=min(min_df, len(texts)),
                dtype=np.float32,
            )
            try:
                vectorizer.fit(texts)
            except ValueError:  # nothing left after min_df
                continue
            terms = vectorizer.get_feature_names_out()
            fitted.append(
                FeatureGroup(
                    group.name,
                    group.analyzer,
                    group.ngram_range,
                    group.weight,
                    tuple(str(t) for t in terms),
                    tuple(float(v) for v in vectorizer.idf_),
                )
            )
        return cls(fitted)

    def transform(self, fields: Sequence[ProductFields]) -> TfidfRows:
        import scipy.sparse as sp

        blocks = []
        shares = np.ones(len(fields), dtype=np.float32)
        for group, vectorizer in zip(self.groups, self._vectorizers, strict=True):
            texts = [group_text(group, f) for f in fields]
            counts = _term_counts(vectorizer, texts)
            if vectorizer is self._known_vectorizer:
                # The in-vocabulary grams are the counts' row sums: analysing each
                # text a second time for them cost a third of the host-side time.
                shares = _known_share(counts, texts, group.ngram_range)
            blocks.append(_tfidf(counts, vectorizer.idf_) * group.weight)
        if blocks:
            matrix = sp.hstack(blocks, format="csr", dtype=np.float32)
        else:
            matrix = sp.csr_matrix((len(fields), 0), dtype=np.float32)
        return TfidfRows(matrix, shares)

    def known_share(self, fields: Sequence[ProductFields]) -> NDArray[Any]:
        """Per product: the share of its title/brand character n-grams seen in training.

        1.0 for a product with no text (nothing is unknown about it).
        """
        return self.transform(fields).known_share

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [g.to_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TfidfFeatures:
        return cls([FeatureGroup.from_dict(g) for g in data["groups"]])
