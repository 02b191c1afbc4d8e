"""Hierarchy-consistent scores and decisions, including through an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from triton_models.categoriser.features import ProductFields
from triton_models.categoriser.hierarchy import LabelSpace, decide
from triton_models.categoriser.metadata import NETWORK_FILE, ModelMetadata
from triton_models.categoriser.network import NetworkConfig, WideAndDeep, to_torchscript
from triton_models.categoriser.scoring import ScoringParams, score_logits
from triton_models.categoriser.serving import Predictor

TREE = """\
Home > Kitchen > Cookware
Home > Kitchen > Coffee Makers
Home > Lighting
Fashion > Shoes > Sneakers
Fashion > Shoes > Boots
Fashion > Dresses
Électronique > Téléphones > Smartphones
"""


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_lines(TREE.splitlines(), source="tree.txt")


@pytest.fixture(scope="module")
def space(taxonomy: Taxonomy) -> LabelSpace:
    leaves = [taxonomy.by_path(p) for p in TREE.splitlines()]
    return LabelSpace.build(taxonomy, leaves, leaves)


def assert_consistent(space: LabelSpace, scores: np.ndarray[Any, Any], thresholds: Any) -> None:
    for index, entry in enumerate(space.entries):
        if entry.parent >= 0:
            assert (scores[:, entry.parent] >= scores[:, index]).all(), entry.path
    decision = decide(space, scores, thresholds)
    accepted = space.accepted(scores, thresholds)
    for row in range(len(scores)):
        for index, entry in enumerate(space.entries):
            if accepted[row, index] and entry.parent >= 0:
                assert accepted[row, entry.parent], "an accepted child implies its parent"
        predicted = int(decision.predicted[row])
        best_leaf = int(decision.top_ids[row, 0])
        best_path = [space.entries[i].id for i in space.path_indices(space.index(best_leaf))]
        if predicted >= 0:
            assert predicted in best_path
            assert accepted[row, space.index(predicted)]
            deeper = best_path[best_path.index(predicted) + 1 :]
            assert not any(accepted[row, space.index(c)] for c in deeper)
        else:
            assert not any(accepted[row, space.index(c)] for c in best_path)
        top = decision.top_scores[row]
        assert (np.diff(top[top > 0]) <= 0).all(), "top-k leaves are sorted best first"


def test_label_space_closes_ancestors_in_taxonomy_order(
    taxonomy: Taxonomy, space: LabelSpace
) -> None:
    paths = [e.path for e in space.entries]
    assert "Home > Kitchen" in paths
    assert "Électronique" in paths
    assert len(space.leaf_ids) == 7
    assert LabelSpace.from_dict(space.to_dict()).to_dict() == space.to_dict()


def test_subtree_sum_gives_parent_the_mass_of_its_children(space: LabelSpace) -> None:
    exclusive = np.zeros((1, len(space.leaf_ids)), dtype=np.float32)
    exclusive[0, :2] = 0.5  # Cookware and Coffee Makers
    scores = space.subtree_sum(exclusive)
    kitchen = next(i for i, e in enumerate(space.entries) if e.path == "Home > Kitchen")
    assert scores[0, kitchen] == pytest.approx(1.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    independent=arrays(np.float32, (4, 13), elements=st.floats(-8, 8, width=32)),
    exclusive=arrays(np.float32, (4, 7), elements=st.floats(-8, 8, width=32)),
    weight=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    thresholds=arrays(np.float32, 13, elements=st.floats(0, 1.25, width=32)),
)
def test_scores_and_decisions_are_hierarchy_consistent(
    space: LabelSpace,
    independent: np.ndarray[Any, Any],
    exclusive: np.ndarray[Any, Any],
    weight: float,
    thresholds: np.ndarray[Any, Any],
) -> None:
    assert len(space) == 13
    params = ScoringParams(1.3, 0.7, weight, thresholds)
    scored = score_logits(space, params, independent, exclusive)
    assert ((scored.scores >= 0) & (scored.scores <= 1)).all()
    assert_consistent(space, scored.scores, thresholds)


@pytest.fixture(scope="module")
def exported_predictor(space: LabelSpace, tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """A randomly initialised network, exported to TorchScript and loaded back."""
    torch.manual_seed(3)
    config = NetworkConfig(n_buckets=4096, n_labels=len(space), n_leaves=len(space.leaf_ids))
    network = WideAndDeep(config)
    for parameter in network.parameters():  # make logits spread out
        torch.nn.init.normal_(parameter, std=0.5)
    directory = tmp_path_factory.mktemp("version") / "1"
    directory.mkdir()
    torch.jit.save(to_torchscript(network), str(directory / NETWORK_FILE))
    thresholds = np.linspace(0.2, 0.9, len(space)).astype(np.float32)
    metadata = ModelMetadata(
        version=1,
        space=space,
        scoring=ScoringParams(1.5, 0.8, 0.5, thresholds),
        network=config.to_dict(),
        raw={},
    )
    scripted = torch.jit.load(str(directory / NETWORK_FILE))  # type: ignore[no-untyped-call]
    return Predictor(scripted, metadata, encoder=None)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    titles=st.lists(st.text(max_size=40), min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
    with_image=st.booleans(),
)
def test_exported_predictions_are_hierarchy_consistent(
    exported_predictor: Predictor, titles: list[str], seed: int, with_image: bool
) -> None:
    rng = np.random.default_rng(seed)
    n = len(titles)
    text = rng.normal(size=(n, 384)).astype(np.float32)
    image = rng.normal(size=(n, 1280)).astype(np.float32) if with_image else None
    fields = [ProductFields(title=t, brand="Brand", raw_category="A > B") for t in titles]
    out = exported_predictor.predict_encoded(fields, text, image)
    space = exported_predictor.metadata.space
    assert out.probabilities.shape == (n, len(space))
    assert_consistent(space, out.probabilities, exported_predictor.metadata.scoring.thresholds)
    assert set(out.top_ids.reshape(-1).tolist()) <= set(space.leaf_ids)
    # PATH_SCORES, which the stream reads instead of PROBABILITIES, are the same scores.
    assert out.path_scores.shape == (n, space.depth)
    for row, predicted in enumerate(out.predicted_id.tolist()):
        chain = space.path_indices(space.index(predicted)) if predicted >= 0 else []
        expected = np.zeros(space.depth, dtype=np.float32)
        expected[: len(chain)] = out.probabilities[row, chain]
        assert np.array_equal(out.path_scores[row], expected)


def test_path_scores_follow_the_category_path_top_first(
    taxonomy: Taxonomy, space: LabelSpace
) -> None:
    sneakers = taxonomy.by_path("Fashion > Shoes > Sneakers")
    scores = np.arange(2 * len(space), dtype=np.float32).reshape(2, len(space))
    out = space.path_scores(scores, np.asarray([sneakers, -1]))
    chain = [space.index(c) for c in taxonomy.ancestors_and_self(sneakers)]
    assert space.depth == 3
    assert out[0].tolist() == scores[0, chain].tolist()
    assert out[1].tolist() == [0.0, 0.0, 0.0]


def test_exported_network_matches_the_trained_module(tmp_path: Path, space: LabelSpace) -> None:
    torch.manual_seed(0)
    network = WideAndDeep(
        NetworkConfig(n_buckets=1024, n_labels=len(space), n_leaves=len(space.leaf_ids))
    )
    network.eval()
    inputs = (
        torch.tensor([1, 5, 9, 3], dtype=torch.int64),
        torch.tensor([0, 3], dtype=torch.int64),
        torch.ones(4),
        torch.randn(2, 384),
        torch.randn(2, 1280),
        torch.tensor([1.0, 0.0]),
    )
    with torch.inference_mode():
        expected = network(*inputs)
    torch.jit.save(to_torchscript(network), str(tmp_path / "n.pt"))
    loaded = torch.jit.load(str(tmp_path / "n.pt"))  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        actual = loaded(*inputs)
    for a, b in zip(actual, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_folding_up_the_full_taxonomy_matches_the_subtree_definition() -> None:
    # The served categoriser folds scores up the tree level by level (reduceat);
    # this checks it against the definition, over all 5,582 Google categories:
    # a category's score is the max of its subtree, and it is accepted when
    # anything in its subtree clears its threshold.
    google = Taxonomy.load(Settings().taxonomy_path)
    full = LabelSpace.build(google, google.ids)
    rng = np.random.default_rng(7)
    probabilities = rng.random((3, len(full)), dtype=np.float32)
    thresholds = rng.uniform(0.9, 1.0, len(full)).astype(np.float32)
    expected_max = probabilities.copy()
    own = probabilities >= thresholds[None, :]
    expected_accepted = own.copy()
    for index in range(len(full)):
        for ancestor in full.path_indices(index):
            expected_max[:, ancestor] = np.maximum(
                expected_max[:, ancestor], probabilities[:, index]
            )
            expected_accepted[:, ancestor] |= own[:, index]
    np.testing.assert_array_equal(full.subtree_max(probabilities), expected_max)
    np.testing.assert_array_equal(full.accepted(probabilities, thresholds), expected_accepted)


def test_subtree_sums_over_the_full_taxonomy_match_the_definition() -> None:
    # Subtree mass is folded up the tree too (no [leaves, labels] matrix). The leaf
    # set here holds inner categories as well as leaves, as user labels may: an
    # inner member keeps its own mass and gains its members' below it.
    google = Taxonomy.load(Settings().taxonomy_path)
    members = google.ids[::3]
    full = LabelSpace.build(google, google.ids, leaf_ids=members)
    rng = np.random.default_rng(11)
    own = rng.dirichlet(np.ones(len(full.leaf_ids)), size=4).astype(np.float32)
    expected = np.zeros((4, len(full)), dtype=np.float64)
    for column, leaf in enumerate(full.leaf_ids):
        for ancestor in full.path_indices(full.index(leaf)):
            expected[:, ancestor] += own[:, column]
    assert any(e.parent == full.index(m) for e in full.entries for m in full.leaf_ids)
    np.testing.assert_allclose(full.subtree_sum(own), expected, rtol=1e-5, atol=1e-6)
