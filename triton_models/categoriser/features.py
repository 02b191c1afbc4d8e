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
    """The text the wide features see: normalised title, brand and raw category."""

    title: str = ""
    brand: str = ""
    raw_category: str = ""


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
