"""Pair features for same-product matching: is offer A the same product as offer B?

Every feature is a float; NaN means "unknown" (a side has no brand, no price, no
model number), which the gradient-boosted model treats as its own branch, so a
missing field never reads as a disagreement. The features, in ``FEATURE_NAMES``
order:

- ``text_cosine``, ``image_cosine``: cosines of the two MiniLM / EfficientNet
  vectors (the ones the stream already has in Milvus; NaN without an image);
- ``title_word_tfidf``, ``title_char_tfidf``: TF-IDF cosines of the titles
  (word unigrams+bigrams, and character 3–5-grams inside words), fitted on the
  training records and shipped inside the model version;
- token overlap: Jaccard, the smaller side's containment, the IDF mass of the
  tokens only one side has, and the length ratio;
- ``brand_equal`` (1/0/NaN) and ``brand_in_other_title``;
- model numbers: ``model_equal`` and ``model_in_other`` (one side's model number
  written anywhere in the other's title or model number, separators ignored);
- ``code_equal``: a shared GTIN/EAN/UPC/MPN (1), codes on both sides but none
  shared (0), otherwise NaN;
- code-like tokens (letters and digits mixed, or four digits or more): the share
  that the other side has, and how many conflict;
- ``price_ratio``: cheaper / dearer of the normalised prices, same currency only;
- number+unit tokens ("256GB", "20 cm", '15.6"'): how many agree, how many
  conflict (same unit, different value, the value absent from the other side).

Pure: no I/O, no model weights; ``PairFeaturizer.fit`` learns only the TF-IDF
vocabularies.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer

FEATURE_NAMES: tuple[str, ...] = (
    "text_cosine",
    "image_cosine",
    "title_word_tfidf",
    "title_char_tfidf",
    "token_jaccard",
    "token_containment",
    "unshared_idf_share",
    "length_ratio",
    "brand_equal",
    "brand_in_other_title",
    "model_equal",
    "model_in_other",
    "code_equal",
    "codelike_shared_share",
    "codelike_conflicts",
    "price_ratio",
    "units_agree",
    "units_conflict",
    "numbers_shared_share",
    "same_merchant",
)

_TOKEN = re.compile(r"[^\W_]+(?:[.,]\d+)?", re.UNICODE)
_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)
_UNIT_SYNONYMS: dict[str, str] = {
    "gb": "gb",
    "gig": "gb",
    "gigabyte": "gb",
    "tb": "tb",
    "mb": "mb",
    "kb": "kb",
    "mm": "mm",
    "cm": "cm",
    "m": "m",
    "in": "in",
    "inch": "in",
    "inches": "in",
    '"': "in",
    "''": "in",
    "ft": "ft",
    "oz": "oz",
    "ml": "ml",
    "l": "l",
    "ltr": "l",
    "kg": "kg",
    "g": "g",
    "lb": "lb",
    "lbs": "lb",
    "w": "w",
    "watt": "w",
    "v": "v",
    "volt": "v",
    "mah": "mah",
    "hz": "hz",
    "khz": "khz",
    "mhz": "mhz",
    "ghz": "ghz",
    "mp": "mp",
    "x": "x",
    "pack": "pack",
    "pk": "pack",
    "ct": "count",
    "count": "count",
    "pcs": "count",
    "pc": "count",
    "pages": "pages",
    "ppm": "ppm",
    "dpi": "dpi",
    "rpm": "rpm",
    "mbps": "mbps",
    "gbps": "gbps",
    "xl": "size",
}
_UNITS = sorted(_UNIT_SYNONYMS, key=len, reverse=True)
_NUMBER_UNIT = re.compile(
    r"(?<![\w.])(\d+(?:[.,]\d+)?)\s?(" + "|".join(re.escape(u) for u in _UNITS) + r")(?![a-z0-9])",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w])")


@dataclass(frozen=True)
class MatchRecord:
    """One offer as the matcher sees it (see ``record_from_fields`` for feeds)."""

    product_id: str
    title: str = ""
    brand: str | None = None
    model_number: str | None = None
    codes: frozenset[str] = frozenset()
    price: float | None = None
    currency: str | None = None
    merchant: str | None = None
    category: str = ""
    size: str | None = None
    colour: str | None = None
    text_vector: tuple[float, ...] | None = field(default=None, compare=False, repr=False)
    image_vector: tuple[float, ...] | None = field(default=None, compare=False, repr=False)


def fold(text: str | None) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold().strip()


def compact(text: str | None) -> str:
    """Lower-case letters and digits only: "CF-500 W" → "cf500w"."""
    return _NOT_ALNUM.sub("", fold(text))


def words(text: str | None) -> list[str]:
    return _TOKEN.findall(fold(text))


def is_codelike(token: str) -> bool:
    """A token that names one product: letters mixed with digits, or 4+ digits."""
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    return (has_digit and has_alpha and len(token) >= 3) or (token.isdigit() and len(token) >= 4)


def normalise_code(value: object) -> str | None:
    """A GTIN/EAN/UPC/MPN as comparable text: digits-only codes lose leading zeros."""
    text = compact(str(value)) if value is not None else ""
    if not text:
        return None
    if text.isdigit():
        text = text.lstrip("0") or "0"
    return text if len(text) >= 4 else None


def number_units(text: str) -> dict[str, set[float]]:
    """Unit → values written with it: "2 x 256GB, 20 cm" → {"x": {2}, "gb": {256}, "cm": {20}}."""
    found: dict[str, set[float]] = {}
    for number, unit in _NUMBER_UNIT.findall(fold(text)):
        canonical = _UNIT_SYNONYMS[unit.lower()]
        found.setdefault(canonical, set()).add(float(number.replace(",", ".")))
    return found


def _numbers(text: str) -> set[float]:
    return {float(n.replace(",", ".")) for n in _NUMBER.findall(fold(text))}


def _cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    if a is None or b is None:
        return math.nan
    va, vb = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb) / norm if norm > 0 else math.nan


def _equal_or_nan(a: str | None, b: str | None) -> float:
    if not a or not b:
        return math.nan
    return 1.0 if a == b else 0.0


def _units(left: str, right: str) -> tuple[float, float]:
    lu, ru = number_units(left), number_units(right)
    agree = conflict = 0
    for unit in lu.keys() & ru.keys():
        shared = lu[unit] & ru[unit]
        agree += len(shared)
        if not shared:
            conflict += 1
    return float(agree), float(conflict)


def _in_text(needle: str | None, haystack: str) -> bool:
    code = compact(needle)
    return len(code) >= 3 and code in haystack


class PairFeaturizer:
    """Computes ``FEATURE_NAMES`` for pairs; holds the fitted TF-IDF vocabularies."""

    def __init__(self) -> None:
        self.word = TfidfVectorizer(
            token_pattern=_TOKEN.pattern, ngram_range=(1, 2), sublinear_tf=True, min_df=1
        )
        self.char = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2
        )
        self.idf: dict[str, float] = {}
        self.default_idf = 1.0

    def fit(self, titles: Iterable[str]) -> PairFeaturizer:
        texts = [fold(t) for t in titles]
        self.word.fit(texts)
        self.char.fit(texts)
        vocabulary: Mapping[str, int] = self.word.vocabulary_
        idf = self.word.idf_
        self.idf = {term: float(idf[i]) for term, i in vocabulary.items() if " " not in term}
        self.default_idf = float(idf.max()) if len(idf) else 1.0
        return self

    def transform(self, pairs: Sequence[tuple[MatchRecord, MatchRecord]]) -> NDArray[Any]:
        """Feature matrix, float32 [len(pairs), len(FEATURE_NAMES)]."""
        out = np.full((len(pairs), len(FEATURE_NAMES)), np.nan, dtype=np.float32)
        if not pairs:
            return out
        left_titles = [fold(a.title) for a, _ in pairs]
        right_titles = [fold(b.title) for _, b in pairs]
        out[:, 2] = _row_cosines(self.word, left_titles, right_titles)
        out[:, 3] = _row_cosines(self.char, left_titles, right_titles)
        for row, (a, b) in enumerate(pairs):
            out[row, :2] = (
                _cosine(a.text_vector, b.text_vector),
                _cosine(a.image_vector, b.image_vector),
            )
            out[row, 4:] = self._pair_row(a, b)
        return out

    def _pair_row(self, a: MatchRecord, b: MatchRecord) -> list[float]:
        ta, tb = set(words(a.title)), set(words(b.title))
        union, shared = ta | tb, ta & tb
        jaccard = len(shared) / len(union) if union else math.nan
        containment = len(shared) / min(len(ta), len(tb)) if ta and tb else math.nan
        mass = sum(self.idf.get(t, self.default_idf) for t in union)
        unshared = sum(self.idf.get(t, self.default_idf) for t in union - shared)
        length_ratio = min(len(ta), len(tb)) / max(len(ta), len(tb)) if ta and tb else math.nan

        brand_a, brand_b = compact(a.brand), compact(b.brand)
        brand_equal = math.nan
        if brand_a and brand_b:
            brand_equal = (
                1.0 if brand_a == brand_b or brand_a in brand_b or brand_b in brand_a else 0.0
            )
        text_a = compact(a.title) + "|" + compact(a.model_number)
        text_b = compact(b.title) + "|" + compact(b.model_number)
        brand_in_title = math.nan
        if brand_a or brand_b:
            brand_in_title = float(
                (bool(brand_a) and brand_a in text_b) or (bool(brand_b) and brand_b in text_a)
            )

        model_a, model_b = compact(a.model_number), compact(b.model_number)
        model_equal = _equal_or_nan(model_a, model_b)
        model_in_other = math.nan
        if model_a or model_b:
            model_in_other = float(_in_text(model_a, text_b) or _in_text(model_b, text_a))

        code_equal = math.nan
        if a.codes and b.codes:
            code_equal = 1.0 if a.codes & b.codes else 0.0

        code_a = {t for t in ta if is_codelike(t)} | ({model_a} if model_a else set())
        code_b = {t for t in tb if is_codelike(t)} | ({model_b} if model_b else set())
        codelike_shared = math.nan
        conflicts = 0.0
        if code_a or code_b:
            found = sum(1 for c in code_a if compact(c) in text_b) + sum(
                1 for c in code_b if compact(c) in text_a
            )
            codelike_shared = found / (len(code_a) + len(code_b))
            if code_a and code_b:
                conflicts = float(
                    sum(1 for c in code_a if compact(c) not in text_b)
                    + sum(1 for c in code_b if compact(c) not in text_a)
                )

        price_ratio = math.nan
        same_currency = (a.currency or "") == (b.currency or "")
        if a.price and b.price and a.price > 0 and b.price > 0 and same_currency:
            price_ratio = min(a.price, b.price) / max(a.price, b.price)

        agree, conflict = _units(a.title, b.title)
        na, nb = _numbers(a.title), _numbers(b.title)
        numbers_shared = len(na & nb) / len(na | nb) if (na or nb) else math.nan
        same_merchant = (
            float(fold(a.merchant) == fold(b.merchant)) if a.merchant and b.merchant else math.nan
        )
        return [
            jaccard,
            containment,
            unshared / mass if mass else math.nan,
            length_ratio,
            brand_equal,
            brand_in_title,
            model_equal,
            model_in_other,
            code_equal,
            codelike_shared,
            conflicts,
            price_ratio,
            agree,
            conflict,
            numbers_shared,
            same_merchant,
        ]


def _row_cosines(vectorizer: TfidfVectorizer, left: list[str], right: list[str]) -> NDArray[Any]:
    """Cosine of row i of ``left`` with row i of ``right`` (TF-IDF rows are L2-normalised)."""
    a = vectorizer.transform(left)
    b = vectorizer.transform(right)
    return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float32).reshape(-1)
