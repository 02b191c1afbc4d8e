"""The linear categoriser's pure parts: TF-IDF features, weights, thresholds, in-domain, serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from catstream.taxonomy import Taxonomy
from training.linear import (
    LinearTrainConfig,
    cross_fit,
    fit_weights,
    fold_ids,
    max_similarity,
    one_vs_rest,
    train_linear,
)
from training.linear_run import linear_metadata
from training.thresholds import (
    choose_served_threshold,
    path_table,
    served_point,
    wilson_lower,
)
from triton_models.categoriser.features import (
    ProductFields,
    TfidfFeatures,
    char_wb_gram_count,
    group_text,
)
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.in_domain import InDomain
from triton_models.categoriser.metadata import FEATURES_FILE, NETWORK_FILE, ModelMetadata
from triton_models.categoriser.scoring import ScoringParams, score_logits
from triton_models.categoriser.serving import Predictor

TREE = """\
Fancy Dress
Fancy Dress > Costumes
Fancy Dress > Costumes > Adults
Fancy Dress > Masks
Hobbies > Trains
"""


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_lines(TREE.splitlines(), source="tree.txt")


def ids(taxonomy: Taxonomy, *paths: str) -> list[int]:
    return [taxonomy.by_path(p) for p in paths]


# ------------------------------------------------------------------ features


def test_tfidf_features_round_trip_and_unit_norm_per_group() -> None:
    train = [
        ProductFields(title="Hornby steam locomotive", brand="Hornby"),
        ProductFields(title="Adult pirate costume", brand="Smiffys", description="A long text"),
    ]
    features = TfidfFeatures.fit(train)
    assert [g.name for g in features.groups] == ["words", "chars", "description"]
    rows = features.transform(train)
    again = TfidfFeatures.from_dict(json.loads(json.dumps(features.to_dict()))).transform(train)
    assert np.allclose(rows.matrix.toarray(), again.matrix.toarray())
    words = len(features.groups[0].vocabulary)
    chars = len(features.groups[1].vocabulary)
    dense = rows.matrix.toarray()
    assert np.isclose(np.linalg.norm(dense[0, :words]), 1.0)
    assert np.isclose(np.linalg.norm(dense[0, words : words + chars]), 1.0)
    assert np.isclose(np.linalg.norm(dense[1, words + chars :]), 0.5)  # description weight
    assert np.allclose(rows.known_share, 1.0)


def test_known_share_is_the_share_of_seen_character_grams() -> None:
    features = TfidfFeatures.fit([ProductFields(title="train")])
    share = features.known_share([ProductFields(title="train"), ProductFields(title="xqzvw")])
    assert share[0] == 1.0
    assert share[1] < 0.2


def test_transform_equals_scikit_learns_tfidf_and_the_analyzers_gram_shares() -> None:
    train = [
        ProductFields(title="Hornby steam locomotive", brand="Hornby", description="Boxed, OO"),
        ProductFields(
            title="Adult pirate costume  XL", brand="Smiffys", raw_category="Fancy Dress"
        ),
    ]
    seen = [*train, ProductFields(title="Ünïcode İstanbul\tkite"), ProductFields(title="a b")]
    features = TfidfFeatures.fit(train)
    rows = features.transform(seen)
    reference = sp.hstack(
        [
            v.transform([group_text(g, f) for f in seen]) * g.weight
            for g, v in features_pairs(features)
        ],
        format="csr",
    )
    assert np.array_equal(rows.matrix.toarray(), reference.toarray())
    analyzer = features_pairs(features)[1][1].build_analyzer()
    vocabulary = set(features.groups[1].vocabulary)
    for share, fields in zip(rows.known_share, seen, strict=True):
        grams = analyzer(group_text(features.groups[1], fields))
        assert share == np.float32(sum(g in vocabulary for g in grams) / len(grams))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from([(2, 5), (1, 3), (3, 3)]),
)
def test_char_wb_gram_count_is_what_the_analyzer_yields(
    text: str, ngram_range: tuple[int, int]
) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    analyzer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range).build_analyzer()
    assert char_wb_gram_count(text, ngram_range) == len(analyzer(text))


def features_pairs(features: TfidfFeatures) -> list[tuple[Any, Any]]:
    return list(zip(features.groups, features._vectorizers, strict=True))


def test_empty_product_gets_one_zero_weight_feature() -> None:
    features = TfidfFeatures.fit([ProductFields(title="train set")])
    batch = features.transform([ProductFields(), ProductFields(title="train")]).batch()
    assert batch.offsets.tolist()[0] == 0
    assert len(batch) == 2
    assert batch.weights[0] == 0.0


# ------------------------------------------------------------------- weights


def test_fit_weights_two_classes_and_a_missing_class() -> None:
    matrix = TfidfFeatures.fit(
        [ProductFields(title=t) for t in ("red train", "blue train", "pirate mask", "witch mask")]
    ).transform(
        [ProductFields(title=t) for t in ("red train", "blue train", "pirate mask", "witch mask")]
    )
    text = np.zeros((4, 3), dtype=np.float32)
    image = np.zeros((4, 2), dtype=np.float32)
    mask = np.zeros(4, dtype=np.float32)
    classes = np.asarray([0, 0, 2, 2])
    weights = fit_weights(matrix.matrix, text, image, mask, classes, 3, LinearTrainConfig())
    logits = weights.logits(matrix.matrix, text, image, mask)
    assert logits.argmax(axis=1).tolist() == [0, 0, 2, 2]
    assert (logits[:, 1] < logits[:, 0]).all()  # class 1 had no rows


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_one_vs_rest_in_threads_is_the_single_fit(threads: int) -> None:
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(7), 12)
    centres = rng.normal(size=(7, 20))
    design = sp.csr_matrix(centres[classes] + rng.normal(scale=1.5, size=(len(classes), 20)))
    one = one_vs_rest(design, classes, LinearTrainConfig(threads=1))
    many = one_vs_rest(design, classes, LinearTrainConfig(threads=threads))
    order = np.argsort(many[0])
    assert many[0][order].tolist() == one[0].tolist() == list(range(7))
    assert np.allclose(many[1][order].toarray(), one[1].toarray(), atol=1e-3)
    assert np.allclose(many[2][order], one[2], atol=1e-3)


def test_classes_fitted_in_chunks_are_the_single_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coef chunk budget smaller than one class still fits every class, one per fit."""
    rng = np.random.default_rng(2)
    classes = np.repeat(np.arange(5), 10)
    design = sp.csr_matrix(rng.normal(size=(5, 12))[classes] + rng.normal(size=(50, 12)))
    whole = one_vs_rest(design, classes, LinearTrainConfig(threads=1))
    monkeypatch.setattr("training.linear.COEF_CHUNK_BYTES", 1)
    chunked = one_vs_rest(design, classes, LinearTrainConfig(threads=2))
    order = np.argsort(chunked[0])
    assert chunked[0][order].tolist() == whole[0].tolist() == list(range(5))
    assert np.allclose(chunked[1][order].toarray(), whole[1].toarray(), atol=1e-3)


def test_served_sparse_weights_are_the_dense_product() -> None:
    """Dense frequent rows + CSR rows give exactly ``x W`` for bags, empty bags included."""
    from triton_models.categoriser.network import LinearCategoriser, LinearConfig, SplitWeights

    rng = np.random.default_rng(3)
    leaves = 40
    share = np.asarray([0.9, 0.02, 0.5, 0.0, 0.1, 0.05, 0.3, 0.01, 0.2])  # per feature row
    dense = rng.normal(size=(9, leaves)).astype(np.float32)
    dense *= rng.random((9, leaves)) < share.reshape(-1, 1)
    weights = sp.csr_matrix(dense)
    split = SplitWeights.from_csr(
        torch.from_numpy(weights.indptr.astype(np.int64)),
        torch.from_numpy(weights.indices.astype(np.int32)),
        torch.from_numpy(weights.data),
        leaves,
    )
    n_dense = split.dense_weight.shape[0] - 1
    assert 0 < n_dense < 9  # both parts are exercised
    assert len(split.values) > 0
    config = LinearConfig(
        n_features=9, n_labels=6, n_leaves=leaves, n_reference=0, text_dim=2, image_dim=3
    )
    bias = torch.arange(leaves, dtype=torch.float32)
    network = LinearCategoriser(
        config, split, torch.zeros(2, leaves), torch.zeros(3, leaves), bias, torch.zeros(0, 2)
    )
    rows = rng.random((3, 9)).astype(np.float32) * (rng.random((3, 9)) < 0.6)
    rows[1] = 0  # an empty product: one zero-weight feature 0, as ``TfidfRows.batch`` sends
    x = sp.csr_matrix(rows)
    indices: list[int] = []
    values: list[float] = []
    offsets = [0]
    for row in range(3):
        indices += x.indices[x.indptr[row] : x.indptr[row + 1]].tolist() or [0]
        values += x.data[x.indptr[row] : x.indptr[row + 1]].tolist() or [0.0]
        offsets.append(len(indices))
    _, logits = network(
        torch.tensor(indices),
        torch.tensor(offsets[:-1]),
        torch.tensor(values, dtype=torch.float32),
        torch.zeros(3, 2),
        torch.zeros(3, 3),
        torch.zeros(3),
    )
    assert np.allclose(logits.numpy(), rows @ dense + bias.numpy(), atol=1e-5)


def test_folds_are_stratified_and_cover_every_row() -> None:
    classes = np.asarray([0] * 9 + [1] * 3 + [2])
    folds = fold_ids(classes, 3, seed=1)
    for label in (0, 1):
        counts = np.bincount(folds[classes == label], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert set(folds.tolist()) <= {0, 1, 2}


def test_large_label_sets_score_one_held_out_fold_only() -> None:
    """From ``cross_fit_below`` rows on, one fold is scored (one fit, not ``folds``)."""
    rng = np.random.default_rng(1)
    classes = np.repeat(np.arange(3), 10)
    text = rng.normal(size=(30, 4)).astype(np.float32)
    fitted: list[int] = []

    def features(train: NDArray[Any], held: NDArray[Any]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        fitted.append(len(train))
        return sp.csr_matrix(text[train]), sp.csr_matrix(text[held])

    image, mask = np.zeros((30, 2), np.float32), np.zeros(30, np.float32)
    every = cross_fit(features, text, image, mask, classes, 3, LinearTrainConfig(folds=3))
    assert (len(fitted), len(every.rows)) == (3, 30)
    fitted.clear()
    config = LinearTrainConfig(folds=3, cross_fit_below=30)
    one = cross_fit(features, text, image, mask, classes, 3, config)
    assert len(fitted) == 1
    assert len(one.rows) == 10 == len(one.logits) == len(one.similarity)
    assert set(one.folds[one.rows].tolist()) == {0}
    assert one.describe(30, 3).startswith("predictions of a held-out fold (10 of 30")


def test_max_similarity() -> None:
    reference = np.eye(3, dtype=np.float32)
    queries = np.asarray([[1, 0, 0], [0.6, 0.8, 0]], dtype=np.float32)
    assert np.allclose(max_similarity(queries, reference, chunk=1), [1.0, 0.8])


# ---------------------------------------------------------------- decisions


def test_an_inner_node_label_does_not_outrank_its_children(taxonomy: Taxonomy) -> None:
    """A label on "Costumes" is its own class; its subtree mass must not decide the ranking."""
    leaves = ids(taxonomy, "Fancy Dress > Costumes", "Fancy Dress > Costumes > Adults")
    space = LabelSpace.build(taxonomy, leaves, leaves)
    params = ScoringParams(1.0, 1.0, 1.0, np.full(len(space), 0.99, dtype=np.float32))
    exclusive = np.log(np.asarray([[0.3, 0.7]], dtype=np.float32))
    scored = score_logits(space, params, np.zeros((1, len(space))), exclusive)
    assert int(scored.decision.top_ids[0, 0]) == leaves[1]
    assert np.isclose(scored.decision.top_scores[0, 0], 0.7)


def test_in_domain_factor_scales_scores_and_keeps_consistency(taxonomy: Taxonomy) -> None:
    leaves = ids(taxonomy, "Fancy Dress > Masks", "Hobbies > Trains")
    space = LabelSpace.build(taxonomy, leaves, leaves)
    params = ScoringParams(1.0, 1.0, 1.0, np.full(len(space), 0.8, dtype=np.float32))
    exclusive = np.log(np.asarray([[0.9, 0.1], [0.9, 0.1]], dtype=np.float32))
    domain = InDomain(full=0.5, zero=0.3)
    factor = domain.factor(np.asarray([0.9, 0.35]))
    assert factor.tolist() == pytest.approx([1.0, 0.25])
    scored = score_logits(space, params, np.zeros((2, len(space))), exclusive, in_domain=factor)
    assert scored.decision.predicted[0] == leaves[0]
    assert scored.decision.predicted[1] == -1  # unlike training: nothing accepted → review
    for index, entry in enumerate(space.entries):
        if entry.parent >= 0:
            assert (scored.scores[:, entry.parent] >= scored.scores[:, index]).all()


def test_in_domain_fit_uses_the_quantile() -> None:
    domain = InDomain.fit(np.linspace(0.0, 1.0, 101), 0.05, 0.2)
    assert domain.full == pytest.approx(0.05)
    assert domain.zero == pytest.approx(-0.15)
    assert InDomain.from_dict(domain.to_dict()) == domain


# ---------------------------------------------------------------- thresholds


def test_wilson_lower_bound() -> None:
    assert wilson_lower(0, 0) == 0.0
    assert 0.9 < wilson_lower(95, 100) < 0.95
    assert wilson_lower(950, 1000) > wilson_lower(95, 100)


def test_served_point_serves_the_deepest_node_that_clears(taxonomy: Taxonomy) -> None:
    leaves = ids(taxonomy, "Fancy Dress > Costumes > Adults", "Fancy Dress > Masks")
    space = LabelSpace.build(taxonomy, leaves, leaves)
    # Row 0 is sure of Adults (right), row 1 half-sure of Adults (truth: Masks).
    exclusive = np.asarray([[0.95, 0.05], [0.55, 0.45]], dtype=np.float32)
    scores = space.subtree_sum(exclusive)
    table = path_table(space, scores, leaves[:1] + leaves[1:], exclusive)
    assert table.depth.tolist() == [3, 3]
    point = served_point(table, 0.9)
    # Row 0 at the leaf; row 1 only "Fancy Dress" (mass 1.0), which is a true ancestor.
    assert point.precision == 1.0
    assert point.served == 1.0
    assert point.leaf_coverage == 0.5
    assert served_point(table, 0.5).precision == 0.5  # row 1 served the wrong leaf


def test_chosen_threshold_keeps_precision_on_unseen_data(taxonomy: Taxonomy) -> None:
    """Choose on one half of simulated calibrated predictions, check on the other."""
    leaves = ids(
        taxonomy, "Fancy Dress > Costumes > Adults", "Fancy Dress > Masks", "Hobbies > Trains"
    )
    space = LabelSpace.build(taxonomy, leaves, leaves)
    rng = np.random.default_rng(0)
    n = 4000
    confidence = rng.uniform(0.34, 1.0, n)
    predicted = rng.integers(0, 3, n)
    right = rng.uniform(size=n) < confidence  # calibrated: P(right) = confidence
    truth = np.where(right, predicted, (predicted + rng.integers(1, 3, n)) % 3)
    probabilities = np.full((n, 3), 0.0, dtype=np.float32)
    probabilities[np.arange(n), predicted] = confidence
    for row in range(n):
        others = [c for c in range(3) if c != predicted[row]]
        probabilities[row, others] = (1 - confidence[row]) / 2
    scores = space.subtree_sum(probabilities)
    truth_ids = [leaves[t] for t in truth]
    fit_table = path_table(space, scores[: n // 2], truth_ids[: n // 2], probabilities[: n // 2])
    check = path_table(space, scores[n // 2 :], truth_ids[n // 2 :], probabilities[n // 2 :])
    chosen = choose_served_threshold(fit_table, 0.9)
    assert chosen.lower_bound >= 0.9
    assert served_point(check, chosen.threshold).precision >= 0.9
    assert 0.0 < chosen.served < 1.0


# ------------------------------------------------------------- end to end


def test_train_export_and_serve_agree(taxonomy: Taxonomy, tmp_path: Path) -> None:
    """Trained weights, written as a version, give the same decisions through ``Predictor``."""
    paths = ["Fancy Dress > Costumes > Adults", "Fancy Dress > Masks", "Hobbies > Trains"]
    words = {
        paths[0]: ["adult costume", "pirate costume men", "ladies costume outfit"],
        paths[1]: ["party mask", "venetian mask", "halloween mask"],
        paths[2]: ["steam locomotive", "train set", "diesel train"],
    }
    fields, truth = [], []
    for path, titles in words.items():
        for i, title in enumerate(titles * 4):
            fields.append(ProductFields(title=f"{title} {i}", brand="Acme"))
            truth.append(taxonomy.by_path(path))
    rng = np.random.default_rng(0)
    text = rng.normal(size=(len(fields), 384)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    image = np.zeros((len(fields), 1280), dtype=np.float32)
    mask = np.zeros(len(fields), dtype=np.float32)
    space = LabelSpace.build(taxonomy, truth, truth)
    model = train_linear(fields, text, image, mask, truth, space, LinearTrainConfig(folds=3), 0.9)
    assert model.held_out["leaf_accuracy"] > 0.9
    from training.linear import build_network

    network = build_network(model)
    torch.jit.save(network, str(tmp_path / NETWORK_FILE))
    (tmp_path / FEATURES_FILE).write_text(json.dumps(model.features.to_dict()))
    raw = {"format": 1, **linear_metadata(model, taxonomy, "hash")}
    metadata = ModelMetadata.from_dict(json.loads(json.dumps(raw)), 1)
    loaded = torch.jit.load(str(tmp_path / NETWORK_FILE))  # type: ignore[no-untyped-call]
    tfidf = TfidfFeatures.from_dict(model.features.to_dict())
    predictor = Predictor(loaded, metadata, encoder=None, tfidf=tfidf)  # type: ignore[arg-type]
    outputs = predictor.predict_encoded(fields, text)
    assert (outputs.top_ids[:, 0] == np.asarray(truth)).mean() == 1.0
    direct = model.weights.logits(model.features.transform(fields).matrix, text, image, mask)
    expected = space.leaf_ids
    assert [expected[i] for i in direct.argmax(axis=1)] == outputs.top_ids[:, 0].tolist()
