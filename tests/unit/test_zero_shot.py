"""The zero-shot categoriser: built from the taxonomy alone, exported, served by Predictor.

The encoder here is a bag-of-words stand-in (pure and instant), so the tests pin
the construction (embeddings of names and paths, label space, scoring,
TorchScript export, serving) rather than MiniLM's semantics; the real encoder
is exercised through Triton in tests/integration/test_zero_shot_triton.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from catstream.taxonomy import Taxonomy
from training.zero_shot import (
    ZeroShotConfig,
    build_zero_shot,
    category_embeddings,
    category_prior,
    export_zero_shot,
    zero_shot_space,
)
from triton_models.categoriser.encoder import TextEncoder, embedding_text
from triton_models.categoriser.features import ProductFields
from triton_models.categoriser.metadata import load_metadata, version_taxonomy
from triton_models.categoriser.serving import Predictor

REPOSITORY_CONFIG = Path(__file__).resolve().parents[2] / "triton_models" / "repository"

TAXONOMY = Taxonomy.from_lines(
    [
        "1 - Home & Garden",
        "2 - Home & Garden > Lawn & Garden",
        "3 - Home & Garden > Lawn & Garden > Garden Hoses",
        "4 - Home & Garden > Lawn & Garden > Lawn Mowers",
        "5 - Electronics",
        "6 - Electronics > Mobile Phones",
        "7 - Electronics > Headphones",
        "8 - Toys & Games",
        "9 - Toys & Games > Building Sets",
    ],
    source="test",
)


class WordsEncoder:
    """Normalised bag-of-words vectors over a fixed vocabulary (a stand-in for MiniLM)."""

    def __init__(self) -> None:
        words = sorted(
            {w for c in TAXONOMY.ids for w in re.findall(r"\w+", TAXONOMY.path_str(c).lower())}
        )
        self.vocabulary = {w: i for i, w in enumerate(words)}

    def encode(self, sentences: Sequence[str], progress: bool = False) -> NDArray[Any]:
        vectors = np.zeros((len(sentences), 384), dtype=np.float32)
        for row, sentence in enumerate(sentences):
            for word in re.findall(r"\w+", sentence.lower()):
                if word in self.vocabulary:
                    vectors[row, self.vocabulary[word]] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def encode_products(
        self, products: Sequence[ProductFields], progress: bool = False
    ) -> NDArray[Any]:
        return self.encode([embedding_text(p) for p in products])


def encoder() -> TextEncoder:
    return WordsEncoder()  # type: ignore[return-value]


def test_category_embeddings_mix_name_and_path() -> None:
    ids = [3, 6]
    names_only = category_embeddings(TAXONOMY, ids, encoder(), name_weight=1.0)
    paths_only = category_embeddings(TAXONOMY, ids, encoder(), name_weight=0.0)
    mixed = category_embeddings(TAXONOMY, ids, encoder(), name_weight=0.5)
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-5)
    words = WordsEncoder()
    assert names_only[0, words.vocabulary["hoses"]] > 0
    assert names_only[0, words.vocabulary["lawn"]] == 0  # the name alone
    assert paths_only[0, words.vocabulary["lawn"]] > 0  # the path names the ancestors
    assert mixed[0, words.vocabulary["lawn"]] > 0
    with pytest.raises(ValueError, match="name_weight"):
        category_embeddings(TAXONOMY, ids, encoder(), name_weight=1.5)


def test_the_space_is_the_whole_taxonomy_with_its_leaves_as_classes() -> None:
    space = zero_shot_space(TAXONOMY)
    assert space.label_ids == list(TAXONOMY.ids)
    assert set(space.leaf_ids) == set(TAXONOMY.leaves())


def test_products_land_on_the_matching_category_or_stay_unanswered() -> None:
    model = build_zero_shot(TAXONOMY, encoder(), ZeroShotConfig(scale=30.0, threshold=0.5))
    predictor = Predictor(model.network, _metadata(model), encoder())
    fields = [
        ProductFields(title="green garden hose 30m"),
        ProductFields(title="mobile phone 128GB"),
        ProductFields(title="zzz qqq"),  # nothing in common with any category
    ]
    outputs = predictor.predict(fields)
    assert outputs.top_ids[0, 0] == 3
    assert outputs.predicted_id[0] == 3
    assert outputs.top_ids[1, 0] == 6
    assert outputs.predicted_id[2] == -1  # an even spread: no category clears the threshold
    # hierarchy-consistent: a parent's score is at least its child's
    space = model.space
    for entry_index, entry in enumerate(space.entries):
        if entry.parent >= 0:
            assert np.all(
                outputs.probabilities[:, entry.parent] >= outputs.probabilities[:, entry_index]
            )


def test_category_prior_scores_any_subset_in_the_given_order() -> None:
    prior = category_prior(TAXONOMY, [9, 3], encoder())
    text = torch.from_numpy(encoder().encode(["garden hoses", "building sets"]))
    logits = prior(text)
    assert logits.shape == (2, 2)
    assert logits[0, 1] > logits[0, 0]  # hose → Garden Hoses (second column)
    assert logits[1, 0] > logits[1, 1]


def test_an_exported_zero_shot_version_serves_the_same_scores(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    (repository / "categoriser").mkdir(parents=True)
    config = REPOSITORY_CONFIG / "categoriser" / "config.pbtxt"
    (repository / "categoriser" / "config.pbtxt").write_text(config.read_text())
    version_dir = export_zero_shot(TAXONOMY, encoder(), repository)
    metadata = load_metadata(repository)
    assert metadata.raw["kind"] == "zero_shot"
    assert metadata.label_ids == list(TAXONOMY.ids)
    assert version_taxonomy(repository, metadata).hash == TAXONOMY.hash
    assert json.loads((version_dir / "metadata.json").read_text())["taxonomy_file"]

    fields = [ProductFields(title="lawn mowers"), ProductFields(title="headphones")]
    served = Predictor.load(version_dir, encoder=encoder()).predict(fields)
    model = build_zero_shot(TAXONOMY, encoder())
    in_memory = Predictor(model.network, _metadata(model), encoder()).predict(fields)
    assert np.abs(served.probabilities - in_memory.probabilities).max() < 1e-5
    assert list(served.top_ids[:, 0]) == [4, 7]


def _metadata(model: Any) -> Any:
    from training.zero_shot import zero_shot_metadata
    from triton_models.categoriser.metadata import METADATA_FORMAT, ModelMetadata

    data = {"format": METADATA_FORMAT, **zero_shot_metadata(model, TAXONOMY)}
    return ModelMetadata.from_dict(data, version=1)


def test_category_embeddings_are_cached_by_their_texts(tmp_path: Path) -> None:
    class Counting(WordsEncoder):
        calls = 0

        def encode(self, sentences: Sequence[str], progress: bool = False) -> NDArray[Any]:
            Counting.calls += 1
            return super().encode(sentences, progress)

    counting: Any = Counting()
    first = category_embeddings(TAXONOMY, [3, 6], counting, 0.3, cache_dir=tmp_path)
    calls = Counting.calls
    again = category_embeddings(TAXONOMY, [3, 6], counting, 0.3, cache_dir=tmp_path)
    assert Counting.calls == calls  # read back, not re-encoded
    assert np.array_equal(first, again)
    category_embeddings(TAXONOMY, [3, 6], counting, 0.5, cache_dir=tmp_path)
    assert Counting.calls > calls  # another weight, another entry
    assert len(list(tmp_path.glob("*.npy"))) == 2
