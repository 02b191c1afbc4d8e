"""Features, splits, targets, calibration, thresholds and the training loop (no MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catstream.taxonomy import Taxonomy
from schemas.events import NormalisedProduct
from training.calibration import fit_softmax_temperature, softmax
from training.dataset import (
    Example,
    build_targets,
    stratified_split,
)
from training.provenance import version_metadata
from training.thresholds import NEVER, choose_thresholds, precision_threshold
from training.train import EncodedData, TrainConfig, run_network, train
from triton_models.categoriser.export import export_version
from triton_models.categoriser.features import FeatureHasher, ProductFields, char_ngrams
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.metadata import load_metadata, served_version, version_taxonomy
from triton_models.categoriser.model_control import (
    policy_line,
    rollback_versions,
    write_version_policy,
)
from triton_models.categoriser.network import to_torchscript
from triton_models.categoriser.scoring import score_logits
from triton_models.categoriser.serving import Predictor

TREE = ["A > A1 > A1a", "A > A1 > A1b", "A > A2", "B > B1", "B > B2", "C"]
REPOSITORY_CONFIG = Path(__file__).resolve().parents[2] / "triton_models" / "repository"


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_lines(TREE, source="tree.txt")


def product(title: str, pid: str = "p") -> NormalisedProduct:
    return NormalisedProduct(product_id=pid, title=title)


# ------------------------------------------------------------------ features


def test_features_are_stable_and_weighted_per_field() -> None:
    hasher = FeatureHasher(2**18)
    fields = ProductFields(title="Nike Air Max trainers", brand="Nike", raw_category="Shoes")
    ids, weights = hasher.product(fields)
    assert (ids, weights) == hasher.product(fields)
    assert ids == sorted(ids)
    assert all(0 <= i < 2**18 for i in ids)
    assert hasher.product(ProductFields()) == ([], [])
    batch = hasher.batch([fields, ProductFields()])
    assert batch.offsets.tolist() == [0, len(ids)]
    assert batch.weights[-1] == 0.0  # an empty product gets one zero-weight feature


def test_char_ngrams_make_misspellings_overlap() -> None:
    right, typo = set(char_ngrams("sneakers")), set(char_ngrams("sneakrs"))
    assert "<sn" in right
    assert len(right & typo) / len(right | typo) > 0.3


# -------------------------------------------------------------------- splits


def test_stratified_split_is_seeded_disjoint_and_per_class() -> None:
    keys = ["a"] * 40 + ["b"] * 20 + ["c"] * 2
    split = stratified_split(keys, 0.15, 0.10, seed=5)
    again = stratified_split(keys, 0.15, 0.10, seed=5)
    other = stratified_split(keys, 0.15, 0.10, seed=6)
    assert split.validation.tolist() == again.validation.tolist()
    assert split.validation.tolist() != other.validation.tolist()
    everything = [*split.train, *split.validation, *split.test]
    assert sorted(everything) == list(range(len(keys)))
    assert sum(keys[i] == "a" for i in split.validation) == 6
    assert sum(keys[i] == "b" for i in split.test) == 2
    assert all(keys[i] != "c" for i in [*split.validation, *split.test])


# ------------------------------------------------------------------- targets


def test_targets_treat_missing_rule_labels_as_unknown(taxonomy: Taxonomy) -> None:
    a1a, b1 = taxonomy.by_path("A > A1 > A1a"), taxonomy.by_path("B > B1")
    space = LabelSpace.build(taxonomy, [taxonomy.by_path(p) for p in TREE])
    human = Example(product("x"), human=a1a)
    ruled = Example(product("y"), rules=frozenset(taxonomy.closure([taxonomy.by_path("A > A1")])))
    nothing = Example(product("z"))
    targets = build_targets([human, ruled, nothing], space, unknown_weight=0.01)
    col = {e.path: i for i, e in enumerate(space.entries)}
    assert targets.exclusive.tolist() == [0, -1, -1]  # leaf set = the label map's leaves
    # human: closure positive, everything else a known negative
    assert targets.independent[0, col["A > A1 > A1a"]] == 1.0
    assert targets.weights[0, col["B > B1"]] == 1.0
    # rules fired "A > A1": A2 is its sibling (known no), B and C are beside A (known no),
    # but A1's children are unknown (the rule did not say which one)
    assert targets.independent[1, col["A > A1"]] == 1.0
    assert targets.weights[1, col["A > A2"]] == 1.0
    assert targets.weights[1, col["B > B1"]] == 1.0
    assert targets.weights[1, col["A > A1 > A1b"]] == pytest.approx(0.01)
    assert np.allclose(targets.weights[2], 0.01)
    assert b1 in space


# ------------------------------------------------------ calibration/thresholds


def test_temperature_scaling_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(4000, 5))
    probabilities = softmax(logits, temperature=2.0)
    targets = np.array([rng.choice(5, p=p) for p in probabilities])
    assert fit_softmax_temperature(logits, targets) == pytest.approx(2.0, rel=0.1)


def test_threshold_is_the_lowest_score_reaching_the_target_precision() -> None:
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    positive = np.array([True, True, True, False, True, False])
    assert precision_threshold(scores, positive, 0.75) == pytest.approx(0.6)
    assert precision_threshold(scores, positive, 1.0) == pytest.approx(0.8)
    assert precision_threshold(scores, np.zeros(6, bool), 0.9) is None


def test_thresholds_fall_back_for_categories_with_too_few_positives() -> None:
    rng = np.random.default_rng(1)
    targets = np.zeros((200, 3))
    targets[:100, 0] = 1
    targets[:2, 1] = 1  # too few positives: pooled threshold
    scores = np.clip(targets * 0.6 + rng.uniform(0, 0.5, size=targets.shape), 0, 1)
    report = choose_thresholds(scores, targets, 0.9, min_positives=5)
    assert report.fallback_categories == 2
    assert report.thresholds[1] == pytest.approx(report.fallback)
    accepted = scores[:, 0] >= report.thresholds[0]
    assert targets[accepted, 0].mean() >= 0.9  # the target precision holds...
    assert accepted.sum() > 100  # ...and the lowest such threshold was taken
    assert report.thresholds[2] == pytest.approx(report.fallback)  # no positives at all
    assert report.fallback < NEVER


# --------------------------------------------------------------- the training


def synthetic(n_per_class: int, seed: int) -> tuple[list[Example], EncodedData, Taxonomy]:
    """Products whose text embedding and features carry their leaf, plus noise."""
    taxonomy = Taxonomy.from_lines(TREE, source="tree.txt")
    leaves = [taxonomy.by_path(p) for p in ["A > A1 > A1a", "A > A1 > A1b", "A > A2", "B > B1"]]
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(leaves), 384)).astype(np.float32)
    examples, ids, weights, text = [], [], [], []
    for k, leaf in enumerate(leaves):
        for i in range(n_per_class):
            examples.append(Example(product(f"item {k} {i}", f"{k}-{i}"), human=leaf))
            ids.append(np.array([k * 10 + int(rng.integers(0, 3)), 500 + i], dtype=np.int64))
            weights.append(np.ones(2, dtype=np.float32))
            text.append(centres[k] + rng.normal(scale=1.5, size=384).astype(np.float32))
    n = len(examples)
    data = EncodedData(
        ids,
        weights,
        np.asarray(text, np.float32),
        np.zeros((n, 1280), np.float32),
        np.zeros(n, np.float32),
    )
    return examples, data, taxonomy


def _train_once(seed: int) -> tuple[Any, list[Example], EncodedData, LabelSpace, Taxonomy]:
    examples, data, taxonomy = synthetic(30, seed=0)
    human = [e.human for e in examples if e.human is not None]
    space = LabelSpace.build(taxonomy, human, human)
    config = TrainConfig(seed=seed, epochs=12, patience=4, n_buckets=1024, hidden=32)
    return train(examples, data, space, config, progress=False), examples, data, space, taxonomy


def _accuracy(model: Any, examples: list[Example], data: EncodedData, space: LabelSpace) -> float:
    rows = model.split.test
    independent, exclusive = run_network(model.network, data, rows)
    top = score_logits(space, model.scoring, independent, exclusive).decision.top_ids[:, 0]
    return float(np.mean(top == np.array([examples[r].human for r in rows])))


def test_training_learns_and_is_reproducible_with_a_seed() -> None:
    first, examples, data, space, _ = _train_once(seed=7)
    second, *_ = _train_once(seed=7)
    accuracy = _accuracy(first, examples, data, space)
    assert accuracy >= 0.9
    assert round(accuracy, 3) == round(_accuracy(second, examples, data, space), 3)
    assert first.scoring.to_dict() == second.scoring.to_dict()
    assert [round(h["validation_loss"], 6) for h in first.history] == [
        round(h["validation_loss"], 6) for h in second.history
    ]


def test_export_writes_a_loadable_version_and_rollback_policy(tmp_path: Path) -> None:
    model, examples, data, space, taxonomy = _train_once(seed=1)
    repository = tmp_path / "repo"
    (repository / "categoriser" / "configs").mkdir(parents=True)
    source = REPOSITORY_CONFIG / "categoriser"
    for name in ("config.pbtxt", "configs/gpu.pbtxt"):
        (repository / "categoriser" / name).write_text((source / name).read_text())
    rows = [{"product_id": "1", "title": "x", "category": "C"}]
    provenance = version_metadata(model, taxonomy, "hash", {"test": {}})
    first = export_version(
        to_torchscript(model.network), repository, provenance, rows, taxonomy=taxonomy
    )
    second = export_version(
        to_torchscript(model.network), repository, provenance, rows, taxonomy=taxonomy
    )
    assert (first.name, second.name) == ("1", "2")
    assert (first / "model.py").read_text().startswith('"""Triton python-backend model')
    assert json.loads((first / "train.jsonl").read_text()) == rows[0]
    metadata = load_metadata(repository)
    assert metadata.version == 2
    assert metadata.taxonomy_hash == taxonomy.hash
    assert metadata.label_ids == space.label_ids
    # the version carries its own taxonomy: prediction needs no --taxonomy
    carried = version_taxonomy(repository, metadata)
    assert carried.hash == taxonomy.hash
    assert [carried.path_str(c) for c in carried.ids] == [
        taxonomy.path_str(c) for c in taxonomy.ids
    ]

    # the exported TorchScript scores like the in-memory network
    rows_ = np.arange(8)
    independent, exclusive = run_network(model.network, data, rows_)
    expected = score_logits(space, model.scoring, independent, exclusive).scores
    predictor = Predictor.load(first, encoder=object())  # type: ignore[arg-type]
    sparse_fields = [ProductFields(title="unused") for _ in rows_]
    predictor.hasher.batch = lambda _fields: data.sparse(rows_)  # type: ignore[method-assign,assignment]
    actual = predictor.predict_encoded(sparse_fields, data.text[rows_]).probabilities
    assert np.abs(actual - expected).max() < 1e-5
    assert len(sparse_fields) == len(rows_)

    gpu = repository / "categoriser" / "configs" / "gpu.pbtxt"
    gpu_before = gpu.read_text()
    write_version_policy(repository, [2, 1])
    # Only the active config is rewritten: Triton reloads every loaded version when
    # another file of the model directory changed.
    assert gpu.read_text() == gpu_before
    write_version_policy(repository, [2, 1], config_name="gpu")
    assert policy_line([2, 1]) in gpu.read_text()
    config = repository / "categoriser" / "config.pbtxt"
    stamp = config.stat().st_mtime_ns
    write_version_policy(repository, [2, 1])  # unchanged: not rewritten
    assert config.stat().st_mtime_ns == stamp
    assert served_version(repository) == 2
    assert rollback_versions(repository) == [1]
    write_version_policy(repository, [1])
    assert served_version(repository) == 1
    assert len(examples) == 120
