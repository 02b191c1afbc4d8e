"""Fine-tuned MiniLM fused with the linear categoriser: training, the version file, serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from catstream.taxonomy import Taxonomy
from training.finetune import FUSION_WEIGHTS, FineTuneConfig, fusion_weight, length_batches
from training.linear import LinearTrainConfig, build_network, train_linear
from training.linear_run import linear_metadata
from triton_models.categoriser.encoder import embedding_text
from triton_models.categoriser.features import ProductFields, TfidfFeatures
from triton_models.categoriser.finetuned import (
    FINETUNED_FILE,
    FineTunedClassifier,
    FineTunedFusion,
)
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.metadata import NETWORK_FILE, ModelMetadata
from triton_models.categoriser.scoring import score_logits
from triton_models.categoriser.serving import Predictor

TREE = "Fancy Dress > Costumes\nFancy Dress > Masks\nHobbies > Trains\n"
WORDS = {
    "Fancy Dress > Costumes": ["adult costume", "pirate costume men", "ladies outfit"],
    "Fancy Dress > Masks": ["party mask", "venetian mask", "halloween mask"],
    "Hobbies > Trains": ["steam locomotive", "train set", "diesel train"],
}
TINY = FineTuneConfig(epochs=1, max_len=16, batch=8)


def test_fusion_weight_takes_the_best_and_the_smallest_on_ties() -> None:
    linear = np.asarray([[1.0, 0.0], [1.0, 0.0]])  # both say class 0
    fine = np.log(np.asarray([[0.9, 0.1], [0.01, 0.99]]))  # the second is class 1
    weight, accuracy = fusion_weight(linear, fine, np.asarray([0, 1]))
    assert accuracy == 1.0
    assert weight == min(w for w in FUSION_WEIGHTS if 1.0 + w * np.log(0.01) < w * np.log(0.99))
    assert fusion_weight(linear, fine, np.asarray([0, 0])) == (0.0, 1.0)


def test_length_batches_cover_every_row_once() -> None:
    lengths = np.asarray([5, 1, 9, 3, 3, 7, 2, 8, 4, 6, 1])
    batches = length_batches(lengths, 4, np.random.default_rng(0))
    assert sorted(int(i) for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) <= 4 for b in batches)


def test_classifier_round_trips_through_its_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FineTunedClassifier(3, max_len=16)
    sentences = ["steam locomotive | Hornby", "party mask", ""]
    (tmp_path / FINETUNED_FILE).write_bytes(model.to_bytes())
    again = FineTunedClassifier.from_file(tmp_path / FINETUNED_FILE, 3, 16)
    first, second = model.log_probabilities(sentences), again.log_probabilities(sentences)
    assert first.shape == (3, 3)
    assert np.allclose(np.exp(first).sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(first, second, atol=1e-5)


@pytest.fixture(scope="module")
def trained() -> tuple[Any, ...]:
    taxonomy = Taxonomy.from_lines(TREE.splitlines(), source="tree.txt")
    fields, truth = [], []
    for path, titles in WORDS.items():
        for i, title in enumerate(titles * 4):
            fields.append(ProductFields(title=f"{title} {i}", brand="Acme"))
            truth.append(taxonomy.by_path(path))
    rng = np.random.default_rng(0)
    text = rng.normal(size=(len(fields), 384)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    image = np.zeros((len(fields), 1280), dtype=np.float32)
    mask = np.zeros(len(fields), dtype=np.float32)
    space = LabelSpace.build(taxonomy, truth, truth)
    model = train_linear(
        fields, text, image, mask, truth, space, LinearTrainConfig(folds=3), 0.9, None, TINY
    )
    return taxonomy, fields, truth, text, model


def test_training_holds_out_a_fifth_for_fusion_and_calibration(trained: tuple[Any, ...]) -> None:
    taxonomy, fields, _truth, _, model = trained
    info = model.finetune
    assert model.finetuned is not None
    assert info["weight"] in FUSION_WEIGHTS
    assert info["fit_products"] + info["held_out_products"] == len(fields)
    assert 0 < info["held_out_products"] < len(fields) // 2
    assert model.n_labelled == len(fields)  # the linear part is refitted on every label
    assert model.weights.sparse.shape[0] == model.features.n_features
    raw = linear_metadata(model, taxonomy, "hash")
    assert raw["finetuned"]["file"] == FINETUNED_FILE
    assert raw["finetuned"]["n_classes"] == 3
    assert "fine-tuned on" in raw["fit"]
    assert "held_rows" not in raw["finetuned"]
    json.dumps(raw)  # the metadata stays JSON


def test_served_scores_add_the_weighted_fine_tuned_log_probabilities(
    trained: tuple[Any, ...],
    tmp_path: Path,
) -> None:
    taxonomy, fields, _, text, model = trained
    raw = {"format": 1, **linear_metadata(model, taxonomy, "hash")}
    raw["finetuned"]["weight"] = 5.0  # strong enough to move every decision
    classifier = model.finetuned
    with torch.no_grad():  # make the fine-tuned head say "the last class" for everything
        classifier.head.bias[:] = torch.tensor([0.0, 0.0, 30.0])
    (tmp_path / FINETUNED_FILE).write_bytes(classifier.to_bytes())
    torch.jit.save(build_network(model), str(tmp_path / NETWORK_FILE))
    metadata = ModelMetadata.from_dict(json.loads(json.dumps(raw)), 1)
    fusion = FineTunedFusion.load(tmp_path, metadata.raw)
    assert fusion is not None
    assert fusion.weight == 5.0
    loaded = torch.jit.load(str(tmp_path / NETWORK_FILE))  # type: ignore[no-untyped-call]
    tfidf = TfidfFeatures.from_dict(model.features.to_dict())
    predictor = Predictor(loaded, metadata, encoder=None, tfidf=tfidf, finetuned=fusion)  # type: ignore[arg-type]
    outputs = predictor.predict_encoded(fields, text)
    image = np.zeros((len(fields), 1280), dtype=np.float32)
    linear = model.weights.logits(
        model.features.transform(fields).matrix, text, image, np.zeros(len(fields))
    )
    fused = linear + 5.0 * classifier.log_probabilities([embedding_text(f) for f in fields])
    assert (fused.argmax(axis=1) == 2).all()
    last = model.space.leaf_ids[2]
    assert (outputs.top_ids[:, 0] == last).all()
    zeros = np.zeros((len(fields), len(model.space)), dtype=np.float32)
    in_domain = predictor.in_domain.factor(  # type: ignore[union-attr]
        loaded.similarity(torch.from_numpy(text)).numpy()
    )
    expected = score_logits(model.space, metadata.scoring, zeros, fused, in_domain=in_domain)
    assert np.allclose(outputs.probabilities, expected.scores, atol=1e-4)
