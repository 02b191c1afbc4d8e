"""Cold start: rule labels train the linear model where the user gave none, and the categories
without any labels keep the zero-shot prior in the served version.

The encoder is test_zero_shot's bag-of-words stand-in for MiniLM (pure and instant).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from schemas.events import NormalisedProduct
from tests.unit.test_zero_shot import REPOSITORY_CONFIG, TAXONOMY, encoder
from training.dataset import Example
from training.examples import TrainingSet
from training.linear import LinearModel, LinearTrainConfig
from training.linear_run import export_linear, fit_linear
from training.unlabelled_prior import attach_prior
from training.weak_labels import rule_category, training_targets
from triton_models.categoriser.features import ProductFields
from triton_models.categoriser.serving import Predictor

HOSES, MOWERS, PHONES, HEADPHONES, BUILDING = 3, 4, 6, 7, 9
Trained = tuple[TrainingSet, LinearModel, list[int]]


def product(number: int, title: str) -> NormalisedProduct:
    return NormalisedProduct.model_validate({"product_id": f"p{number}", "title": title})


def examples(human: dict[str, int], rules: dict[str, frozenset[int]]) -> list[Example]:
    out: list[Example] = []
    for title, category in human.items():
        for copy in range(6):
            out.append(Example(product=product(len(out), f"{title} {copy}"), human=category))
    for title, fired in rules.items():
        for copy in range(6):
            out.append(Example(product=product(len(out), f"{title} {copy}"), rules=fired))
    return out


def test_rule_labels_count_only_where_the_user_gave_none() -> None:
    rows = examples(
        {"garden hoses": HOSES},
        {
            "lawn mowers": frozenset({MOWERS, 2}),  # one path: the deepest, Lawn Mowers
            "headphones": frozenset({HEADPHONES}),
            "garden hose reel": frozenset({HOSES}),  # the user labels Garden Hoses
            "lawn": frozenset({2}),  # an ancestor of the user's Garden Hoses
            "phone or set": frozenset({PHONES, BUILDING}),  # the rules disagree
        },
    )
    targets = training_targets(rows, TAXONOMY)
    assert targets.human == 6
    assert targets.weak == 12
    assert targets.weak_dropped == 18
    assert sorted(set(targets.categories.values())) == [HOSES, MOWERS, HEADPHONES]
    assert rule_category(frozenset({PHONES, BUILDING}), TAXONOMY) is None


def _repository(tmp_path: Path) -> Path:
    repository = tmp_path / "repo"
    (repository / "categoriser").mkdir(parents=True)
    config = REPOSITORY_CONFIG / "categoriser" / "config.pbtxt"
    (repository / "categoriser" / "config.pbtxt").write_text(config.read_text())
    return repository


@pytest.fixture(scope="module")
def trained() -> Trained:
    """Human labels for Garden Hoses; rule labels for Lawn Mowers and Headphones."""
    rows = examples(
        {"garden hoses": HOSES, "green garden hoses": HOSES},
        {
            "lawn mowers": frozenset({MOWERS}),
            "lawn mowers garden": frozenset({MOWERS}),
            "headphones": frozenset({HEADPHONES}),
            "electronics headphones": frozenset({HEADPHONES}),
        },
    )
    training = TrainingSet(examples=rows, rows=[], data_hash="test")
    model, seen = fit_linear(
        training, TAXONOMY, encoder(), LinearTrainConfig(folds=3), 0.9, progress=False
    )
    return training, model, seen


def test_the_linear_model_learns_rule_labels(trained: Trained) -> None:
    _, model, seen = trained
    assert sorted(model.space.leaf_ids) == [HOSES, MOWERS, HEADPHONES]
    assert len(seen) == 36


def test_categories_without_labels_keep_the_zero_shot_prior(
    trained: Trained, tmp_path: Path
) -> None:
    training, model, seen = trained
    repository = _repository(tmp_path)
    plain = export_linear(model, TAXONOMY, repository, training, seen)
    prior = attach_prior(TAXONOMY, model.space, model.scoring, encoder())
    assert prior is not None
    assert prior.unlabelled_leaves == 2
    with_prior = export_linear(
        model,
        TAXONOMY,
        repository,
        training,
        seen,
        prior.metadata,
        prior.files,
    )
    fields = [
        ProductFields(title="mobile phones"),
        ProductFields(title="building sets"),
        ProductFields(title="garden hoses"),
        ProductFields(title="headphones"),
    ]
    served = Predictor.load(with_prior, encoder=encoder()).predict(fields)
    alone = Predictor.load(plain, encoder=encoder()).predict(fields)
    # Unlike anything labelled: the prior's category, served (it clears the zero-shot threshold).
    assert list(served.top_ids[:2, 0]) == [PHONES, BUILDING]
    assert list(served.predicted_id[:2]) == [PHONES, BUILDING]
    assert PHONES not in alone.top_ids[0]
    assert alone.predicted_id[0] == -1
    # Like the training data: exactly what the supervised model alone serves.
    assert list(served.top_ids[2:, 0]) == [HOSES, HEADPHONES]
    assert list(served.predicted_id[2:]) == list(alone.predicted_id[2:])
    assert np.allclose(served.top_scores[2:, 0], alone.top_scores[2:, 0], atol=1e-6)
    # Parents hold their subtree's mass: consistent over the whole taxonomy.
    metadata = Predictor.load(with_prior, encoder=encoder()).metadata
    for index, entry in enumerate(metadata.space.entries):
        if entry.parent >= 0:
            assert (served.probabilities[:, entry.parent] >= served.probabilities[:, index]).all()
    assert metadata.label_ids == list(TAXONOMY.ids)
