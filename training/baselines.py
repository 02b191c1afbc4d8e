"""Baselines catstream must beat, scored with the same metrics on the same split.

* ``TfidfLogisticBaseline``: TF-IDF over word 1–2-grams and character 2–5-grams of
  title, brand and raw category, then a multinomial logistic regression over leaves.
* ``LinearSvcBaseline``: the issue's reference, TF-IDF (word 1–2 + char_wb 2–5) of title and
  brand, then ``LinearSVC(C=0.5)``.
* ``RuleBaseline``: the legacy rule labeller as a classifier — the most specific
  category a rule fired on, or abstain when none fired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from catstream.taxonomy import Taxonomy
from schemas.events import NormalisedProduct
from training.evaluation import evaluate_predictions
from training.rules import RuleLabeller, product_text

Product = NormalisedProduct | Mapping[str, Any]
Predictions = tuple[list[int | None], list[float | None]]


def baseline_text(product: Product, include_description: bool = False) -> str:
    """The text a bag-of-n-grams model sees: title, brand, raw category (folded)."""
    text = product_text(product)
    parts = [text.title, text.brand, text.raw_category]
    if include_description:
        parts.append(text.description[:500])
    return " | ".join(p for p in parts if p)


class TfidfLogisticBaseline:
    """TF-IDF (word + char n-grams) + logistic regression over leaf ids."""

    def __init__(self, c: float = 10.0, include_description: bool = False, seed: int = 13) -> None:
        self.include_description = include_description
        features = FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
                (
                    "chars",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
                    ),
                ),
            ]
        )
        self.pipeline = Pipeline(
            [
                ("features", features),
                ("classifier", LogisticRegression(C=c, max_iter=2000, random_state=seed)),
            ]
        )
        self.classes: npt.NDArray[np.int64] | None = None

    def _texts(self, products: Sequence[Product]) -> list[str]:
        return [baseline_text(p, self.include_description) for p in products]

    def fit(self, products: Sequence[Product], leaf_ids: Sequence[int]) -> TfidfLogisticBaseline:
        if len(products) != len(leaf_ids):
            raise ValueError("fit needs one leaf id per product")
        if len(set(leaf_ids)) < 2:
            raise ValueError("the TF-IDF baseline needs training products of at least 2 categories")
        self.pipeline.fit(self._texts(products), np.asarray(leaf_ids, dtype=np.int64))
        self.classes = np.asarray(self.pipeline.classes_, dtype=np.int64)
        return self

    def predict_proba(self, products: Sequence[Product]) -> npt.NDArray[np.float64]:
        """(n products, n classes) probabilities; columns follow ``self.classes``."""
        if self.classes is None:
            raise RuntimeError("call fit() before predict_proba()")
        if not products:
            return np.zeros((0, len(self.classes)))
        return np.asarray(self.pipeline.predict_proba(self._texts(products)))

    def predict(self, products: Sequence[Product]) -> Predictions:
        """(top-1 leaf id, its probability) per product."""
        probabilities = self.predict_proba(products)
        assert self.classes is not None
        top = probabilities.argmax(axis=1) if len(products) else np.zeros(0, dtype=np.int64)
        ids: list[int | None] = [int(self.classes[i]) for i in top]
        confidences: list[float | None] = [
            float(probabilities[row, i]) for row, i in enumerate(top)
        ]
        return ids, confidences


class LinearSvcBaseline:
    """The reference the issue measures against: TF-IDF (word 1–2-grams + char_wb 2–5-grams,
    sublinear tf) of title + brand, then ``LinearSVC(C=0.5)``. No probabilities: no ECE."""

    def __init__(self, c: float = 0.5, seed: int = 13) -> None:
        features = FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                (
                    "chars",
                    TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                ),
            ]
        )
        self.pipeline = Pipeline(
            [("features", features), ("classifier", LinearSVC(C=c, random_state=seed))]
        )

    @staticmethod
    def _texts(products: Sequence[Product]) -> list[str]:
        texts = []
        for product in products:
            text = product_text(product)
            texts.append(" ".join(p for p in (text.title, text.brand) if p))
        return texts

    def fit(self, products: Sequence[Product], leaf_ids: Sequence[int]) -> LinearSvcBaseline:
        if len(set(leaf_ids)) < 2:
            raise ValueError(
                "the LinearSVC baseline needs training products of at least 2 categories"
            )
        self.pipeline.fit(self._texts(products), np.asarray(leaf_ids, dtype=np.int64))
        return self

    def predict(self, products: Sequence[Product]) -> Predictions:
        if not products:
            return [], []
        predicted = self.pipeline.predict(self._texts(products))
        return [int(i) for i in predicted], [None] * len(products)


class RuleBaseline:
    """The rule labeller as a classifier: most specific fired category, else abstain.

    Rules carry no probability; a fired rule is reported with confidence 1.0 so the
    calibration error shows how far rule precision is from certainty.
    """

    def __init__(self, labeller: RuleLabeller) -> None:
        self.labeller = labeller

    def predict(self, products: Sequence[Product]) -> Predictions:
        ids: list[int | None] = []
        confidences: list[float | None] = []
        for product in products:
            best = self.labeller.best(product)
            ids.append(None if best is None else best.category_id)
            confidences.append(None if best is None else 1.0)
        return ids, confidences


def evaluate_baselines(
    taxonomy: Taxonomy,
    train: Sequence[Product],
    train_ids: Sequence[int],
    test: Sequence[Product],
    test_ids: Sequence[int],
    *,
    rules: RuleLabeller | None = None,
    target_precision: float = 0.9,
    seed: int = 13,
) -> dict[str, dict[str, Any]]:
    """``{"tfidf_lr", "linear_svc", "rules"}`` metrics on the test split (rules when given)."""
    results: dict[str, dict[str, Any]] = {}
    model = TfidfLogisticBaseline(seed=seed).fit(train, train_ids)
    ids, confidences = model.predict(test)
    results["tfidf_lr"] = evaluate_predictions(
        taxonomy, test_ids, ids, confidences, target_precision=target_precision
    )
    svc = LinearSvcBaseline(seed=seed).fit(train, train_ids)
    ids, _ = svc.predict(test)
    results["linear_svc"] = evaluate_predictions(
        taxonomy, test_ids, ids, None, target_precision=target_precision
    )
    if rules is not None:
        ids, confidences = RuleBaseline(rules).predict(test)
        results["rules"] = evaluate_predictions(
            taxonomy, test_ids, ids, confidences, target_precision=target_precision
        )
    return results
