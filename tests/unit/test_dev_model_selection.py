"""The model-selection bench's candidates learn a toy catalogue where a word names the class."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bench.dev_model_selection import _accuracy, _complement_nb, _mlp, _svc, _tfidf

WORDS = ("train", "doll", "puzzle")


def _toy(n: int, seed: int) -> tuple[list[str], NDArray[np.int64], NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(WORDS), size=n)
    texts = [f"{WORDS[y]} item {rng.integers(0, 1000)} colour {rng.integers(0, 5)}" for y in labels]
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    return texts, labels.astype(np.int64), embeddings


def test_candidates_separate_a_keyword_catalogue() -> None:
    train_text, y_train, e_train = _toy(90, 0)
    test_text, y_test, e_test = _toy(30, 1)
    x_train, (x_test,) = _tfidf(train_text, [test_text])
    n_classes = len(WORDS) + 1  # the last class has no training rows
    svc = _svc(x_train, y_train, x_test, n_classes)
    assert _accuracy(svc, y_test) == 1.0
    assert (svc[:, -1] == -10.0).all()
    mlp = _mlp(x_train, e_train, y_train, x_test, e_test, n_classes, epochs=200, hidden=16)
    assert _accuracy(mlp, y_test) == 1.0
    assert np.allclose(np.exp(mlp).sum(axis=1), 1.0, atol=1e-4)  # log-probabilities
    assert _accuracy(_complement_nb(x_train, y_train, x_test, n_classes), y_test) == 1.0
