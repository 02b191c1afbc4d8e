"""Review routing: uncertainty measures, the review rule, budget, dedup, batch order, items."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from catstream.metrics import REGISTRY
from catstream.settings import Settings
from schemas.events import CategoryScore, ReviewItem
from streams.review import (
    MEASURES,
    ReviewCandidate,
    ReviewRouter,
    default_threshold,
    needs_review,
    review_threshold,
    to_review_item,
    uncertainties,
    uncertainty,
)

DIM = 384


class FakeClock:
    """A clock the test moves by hand (the router only reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def unit(vector: NDArray[np.float64]) -> NDArray[np.float32]:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def random_unit(seed: int) -> NDArray[np.float32]:
    return unit(np.random.default_rng(seed).normal(size=DIM))


def random_units(n: int, seed: int = 0) -> NDArray[np.float32]:
    rows = np.random.default_rng(seed).normal(size=(n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def with_cosine(base: NDArray[np.float32], cosine: float, seed: int) -> NDArray[np.float32]:
    """A unit vector whose cosine with ``base`` is exactly ``cosine``."""
    other = np.random.default_rng(seed).normal(size=DIM)
    other -= other.dot(base) * base
    other = other / np.linalg.norm(other)
    return unit(cosine * base + math.sqrt(1 - cosine**2) * other)


def candidate(
    product_id: str,
    uncertainty: float = 0.9,
    *,
    embedding: NDArray[np.float32] | None = None,
    fingerprint: str = "fp1",
    accepted: bool = True,
    scores: Sequence[float] = (0.5, 0.3),
) -> ReviewCandidate:
    return ReviewCandidate(
        product_id=product_id,
        uncertainty=uncertainty,
        accepted=accepted,
        embedding=embedding if embedding is not None else random_unit(hash(product_id) % 10**6),
        fingerprint=fingerprint,
        model_version="3",
        candidates=[
            CategoryScore(id=100 + i, path=f"Root > Leaf {i}", score=s, level=2)
            for i, s in enumerate(scores)
        ],
        title=f"title of {product_id}",
        brand="Acme",
        raw_category="Shoes",
        image_urls=["https://img.example/a.jpg"],
        url="https://shop.example/p",
    )


def router(
    clock: FakeClock | None = None,
    *,
    random_share: float = 0.0,
    capacity: int = 2000,
    **settings: object,
) -> ReviewRouter:
    values: dict[str, object] = {
        "review_budget_per_window": 100,
        "review_window_s": 60.0,
        "review_dedup_cosine": 0.98,
    }
    values.update(settings)
    return ReviewRouter(
        Settings(**values),  # type: ignore[arg-type]
        clock=clock or FakeClock(),
        random_share=random_share,
        capacity=capacity,
    )


def outcomes(decisions: Sequence[object]) -> list[str]:
    return [d.outcome for d in decisions]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- measures


@pytest.mark.parametrize("measure", MEASURES)
def test_one_hot_is_certain(measure: str) -> None:
    assert uncertainty(measure, [1.0, 0.0, 0.0, 0.0, 0.0]) == pytest.approx(0.0)


@pytest.mark.parametrize("measure", ["margin", "entropy"])
def test_uniform_tie_is_maximally_uncertain(measure: str) -> None:
    assert uncertainty(measure, [0.2] * 5) == pytest.approx(1.0)


def test_two_way_tie_is_maximal_margin_but_half_entropy_of_five() -> None:
    assert uncertainty("margin", [0.5, 0.5, 0, 0, 0]) == pytest.approx(1.0)
    assert uncertainty("entropy", [0.5, 0.5, 0, 0, 0]) == pytest.approx(math.log(2) / math.log(5))


def test_known_values() -> None:
    scores = [0.7, 0.2, 0.1]
    assert uncertainty("margin", scores) == pytest.approx(0.5)
    assert uncertainty("probability", scores) == pytest.approx(0.3)
    expected = -sum(p * math.log(p) for p in scores) / math.log(3)
    assert uncertainty("entropy", scores) == pytest.approx(expected)


def test_order_of_scores_does_not_matter() -> None:
    for measure in MEASURES:
        assert uncertainty(measure, [0.1, 0.7, 0.2]) == pytest.approx(
            uncertainty(measure, [0.7, 0.2, 0.1])
        )


def test_entropy_renormalises_but_margin_and_probability_read_calibrated_scores() -> None:
    # Top-5 of a calibrated model rarely sums to 1; entropy only sees the shape.
    assert uncertainty("entropy", [0.4, 0.1]) == pytest.approx(uncertainty("entropy", [0.8, 0.2]))
    assert uncertainty("probability", [0.4, 0.1]) == pytest.approx(0.6)
    assert uncertainty("margin", [0.4, 0.1]) == pytest.approx(0.7)


@pytest.mark.parametrize("measure", MEASURES)
def test_no_information_is_maximal_uncertainty(measure: str) -> None:
    assert uncertainty(measure, []) == 1.0
    assert uncertainty(measure, [0.0, 0.0, 0.0]) == 1.0


def test_out_of_range_scores_are_clipped() -> None:
    assert uncertainty("probability", [1.2, -0.1]) == 0.0
    assert 0.0 <= uncertainty("entropy", [1.5, 0.5, -1.0]) <= 1.0


def test_batch_equals_rows() -> None:
    matrix = np.random.default_rng(1).dirichlet(np.ones(5), size=50)
    for measure in MEASURES:
        rows = [uncertainty(measure, row) for row in matrix]
        assert uncertainties(measure, matrix).tolist() == pytest.approx(rows)


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="CATSTREAM_REVIEW_MEASURE"):
        uncertainty("gini", [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        uncertainty("margin", [float("nan"), 0.1])
    with pytest.raises(ValueError, match="matrix"):
        uncertainties("margin", [0.5, 0.5])


# ------------------------------------------------------------------ rule


def test_rule_is_strictly_above_threshold_or_nothing_accepted() -> None:
    assert needs_review("margin", 0.21, 0.2, accepted=True)
    assert not needs_review("margin", 0.2, 0.2, accepted=True)
    assert not needs_review("margin", 0.05, 0.2, accepted=True)
    assert needs_review("margin", 0.05, 0.2, accepted=False)


def test_threshold_none_uses_the_measure_default() -> None:
    assert default_threshold("entropy") == 0.3
    assert not needs_review("entropy", 0.25, None, accepted=True)
    assert needs_review("entropy", 0.31, None, accepted=True)


def test_settings_threshold_wins_only_when_set() -> None:
    assert review_threshold(Settings(review_measure="entropy")) == default_threshold("entropy")
    assert review_threshold(Settings(review_measure="entropy", review_threshold=0.5)) == 0.5
    assert review_threshold(Settings(review_measure="margin")) == 0.2


def _simulated_top5(mean_shape: float, n: int = 5000) -> NDArray[np.float64]:
    """Calibrated-looking top-5 scores: p1 ~ Beta(a, 1), the rest on a few confusers."""
    rng = np.random.default_rng(7)
    p1 = rng.beta(mean_shape, 1.0, n)
    rest = rng.dirichlet(np.full(199, 0.05), n) * (1 - p1)[:, None]
    full = np.concatenate([p1[:, None], rest], axis=1)
    return -np.sort(-full, axis=1)[:, :5]


@pytest.mark.parametrize("measure", MEASURES)
def test_default_thresholds_send_a_minority_of_a_confident_model(measure: str) -> None:
    threshold = default_threshold(measure)
    confident = uncertainties(measure, _simulated_top5(9.0))  # mean p1 0.9
    bad = uncertainties(measure, _simulated_top5(1.0))  # mean p1 0.5
    assert 0.05 < float((confident > threshold).mean()) < 0.25
    assert float((bad > threshold).mean()) > 0.6


# ---------------------------------------------------------------- routing


def test_confident_products_are_not_sent() -> None:
    decisions = router().offer_batch([candidate("a", 0.05), candidate("b", 0.9)])
    assert outcomes(decisions) == ["confident", "sent"]
    assert decisions[0].item is None


def test_nothing_accepted_is_sent_even_when_the_margin_is_wide() -> None:
    (decision,) = router().offer_batch([candidate("a", 0.05, accepted=False)])
    assert decision.outcome == "sent"


def test_budget_is_a_sliding_window() -> None:
    clock = FakeClock()
    r = router(clock, review_budget_per_window=3, review_window_s=10.0)
    first = r.offer_batch([candidate(f"a{i}") for i in range(5)])
    assert outcomes(first).count("sent") == 3
    assert outcomes(first).count("over_budget") == 2
    clock.now += 9.9  # the first three are still in the window
    assert r.offer(candidate("b")).outcome == "over_budget"
    clock.now += 0.1  # now they left it
    later = r.offer_batch([candidate(f"c{i}") for i in range(4)])
    assert outcomes(later) == ["sent", "sent", "sent", "over_budget"]


def test_a_flood_of_uncertain_products_never_exceeds_the_budget() -> None:
    clock = FakeClock()
    r = router(clock, review_budget_per_window=20, review_window_s=60.0)
    sent_at: list[float] = []
    vectors = random_units(300 * 64)
    for batch in range(300):  # 300 batches of 64, one every 0.5 s: all uncertain
        rows = vectors[batch * 64 : (batch + 1) * 64]
        decisions = r.offer_batch(
            [candidate(f"p{batch}-{i}", 0.99, embedding=row) for i, row in enumerate(rows)]
        )
        sent_at += [clock.now] * sum(d.sent for d in decisions)
        clock.now += 0.5
    times = np.array(sent_at)
    worst = max(int(((times >= t) & (times < t + 60.0)).sum()) for t in times)
    assert worst == 20
    assert len(sent_at) == 20 * 3  # 150 s of stream: three full windows (0, 60, 120)


def test_the_most_uncertain_of_a_batch_get_the_budget() -> None:
    r = router(review_budget_per_window=2)
    batch = [candidate("a", 0.3), candidate("b", 0.95), candidate("c", 0.5), candidate("d", 0.9)]
    decisions = r.offer_batch(batch)
    assert [d.product_id for d in decisions] == ["a", "b", "c", "d"]  # input order
    assert outcomes(decisions) == ["over_budget", "sent", "over_budget", "sent"]


def test_near_duplicate_embeddings_are_dropped() -> None:
    base = random_unit(1)
    r = router()
    assert r.offer(candidate("a", embedding=base)).outcome == "sent"
    assert r.offer(candidate("b", embedding=with_cosine(base, 0.985, 2))).outcome == "duplicate"
    assert r.offer(candidate("c", embedding=with_cosine(base, 0.95, 3))).outcome == "sent"


def test_near_duplicates_within_one_batch_keep_the_most_uncertain() -> None:
    base = random_unit(4)
    twin = with_cosine(base, 0.99, 5)
    decisions = router().offer_batch(
        [candidate("a", 0.4, embedding=base), candidate("b", 0.8, embedding=twin)]
    )
    assert outcomes(decisions) == ["duplicate", "sent"]


def test_duplicates_spend_no_budget() -> None:
    base = random_unit(6)
    r = router(review_budget_per_window=2)
    r.offer(candidate("a", embedding=base))
    assert r.offer(candidate("b", embedding=base)).outcome == "duplicate"
    assert r.offer(candidate("c")).outcome == "sent"


def test_same_product_twice_only_when_its_fingerprint_changed() -> None:
    clock = FakeClock()
    r = router(clock, review_window_s=60.0)
    vector = random_unit(7)
    assert r.offer(candidate("p", embedding=vector, fingerprint="v1")).outcome == "sent"
    clock.now += 30
    # Same text embedding too: the product's own earlier item does not make it a duplicate.
    assert r.offer(candidate("p", embedding=vector, fingerprint="v1")).outcome == "duplicate"
    assert r.offer(candidate("p", embedding=vector, fingerprint="v2")).outcome == "sent"
    assert r.offer(candidate("p", embedding=vector, fingerprint="v2")).outcome == "duplicate"


def test_a_changed_product_is_still_checked_against_other_products() -> None:
    base = random_unit(8)
    r = router()
    r.offer(candidate("p", embedding=random_unit(9), fingerprint="v1"))
    r.offer(candidate("q", embedding=base))
    changed = candidate("p", embedding=with_cosine(base, 0.99, 10), fingerprint="v2")
    assert r.offer(changed).outcome == "duplicate"


def test_memory_is_bounded_by_the_ring_and_the_window() -> None:
    clock = FakeClock()
    r = router(clock, capacity=3, review_window_s=10.0)
    first = random_unit(11)
    r.offer(candidate("first", embedding=first))
    for i in range(3):  # push "first" out of the ring of 3 embeddings
        r.offer(candidate(f"x{i}"))
    # Its embedding is forgotten, its id is remembered for the rest of the window.
    assert r.offer(candidate("first", embedding=first)).outcome == "duplicate"
    assert r.offer(candidate("copy", embedding=first)).outcome == "sent"
    clock.now += 10.0
    assert r.offer(candidate("first", embedding=random_unit(12))).outcome == "sent"
    r.offer(candidate("y"))
    assert set(r._recent.products) <= {"first", "copy", "x2", "y"}


def test_embedding_dimension_change_is_an_error() -> None:
    r = router()
    r.offer(candidate("a"))
    with pytest.raises(ValueError, match="dimensions"):
        r.offer(candidate("b", embedding=unit(np.ones(128))))


def test_zero_embedding_is_never_a_duplicate() -> None:
    r = router()
    zero = np.zeros(DIM, dtype=np.float32)
    assert outcomes(r.offer_batch([candidate("a", embedding=zero)])) == ["sent"]
    assert outcomes(r.offer_batch([candidate("b", embedding=zero)])) == ["sent"]


def test_random_samples_come_after_uncertain_products() -> None:
    r = router(random_share=1.0, review_budget_per_window=2)
    decisions = r.offer_batch([candidate("sure", 0.01), candidate("u1", 0.9), candidate("u2", 0.8)])
    assert outcomes(decisions) == ["over_budget", "sent", "sent"]
    assert [d.sampled for d in decisions] == [True, False, False]
    (late,) = router(random_share=1.0).offer_batch([candidate("sure", 0.01)])
    assert (late.outcome, late.sampled) == ("sent", True)


def test_random_share_is_seeded_and_roughly_respected() -> None:
    def picks() -> list[bool]:
        r = router(random_share=0.1, review_budget_per_window=10_000)
        vectors = random_units(2000)
        decisions = r.offer_batch(
            [candidate(f"c{i}", 0.01, embedding=row) for i, row in enumerate(vectors)]
        )
        return [d.sent for d in decisions]

    first = picks()
    assert first == picks()
    assert 150 < sum(first) < 250
    with pytest.raises(ValueError, match="share"):
        router(random_share=1.5)


def test_outcomes_are_counted() -> None:
    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("catstream_review_items_total", {"outcome": outcome}) or 0

    before = {o: count(o) for o in ("sent", "confident", "over_budget", "duplicate")}
    base = random_unit(13)
    r = router(review_budget_per_window=1)
    r.offer_batch([candidate("a", 0.01), candidate("b", embedding=base), candidate("c")])
    r.offer(candidate("d", embedding=base))
    after = {o: count(o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "sent": 1,
        "confident": 1,
        "over_budget": 1,
        "duplicate": 1,
    }


# ------------------------------------------------------------------- items


def test_review_item_is_a_valid_event_with_at_most_five_candidates_best_first() -> None:
    scores = (0.1, 0.3, 0.05, 0.2, 0.15, 0.12, 0.08)
    item = to_review_item(candidate("a", 0.7, scores=scores), "margin")
    assert [c.score for c in item.candidates] == [0.3, 0.2, 0.15, 0.12, 0.1]
    again = ReviewItem.model_validate_json(item.model_dump_json())
    assert again == item
    assert again.measure == "margin"
    assert again.title == "title of a"
    assert again.image_urls == ["https://img.example/a.jpg"]
    assert again.fingerprint == "fp1"
    assert again.model_version == "3"


def test_sent_decision_carries_the_router_measure() -> None:
    (decision,) = router(review_measure="entropy").offer_batch([candidate("a", 0.9)])
    assert decision.item is not None
    assert decision.item.measure == "entropy"
    assert decision.item.uncertainty == pytest.approx(0.9)


def test_a_changed_product_after_other_sends_in_the_same_batch() -> None:
    # Regression: items sent earlier in a batch grew the ring past the similarity
    # matrix computed for the batch, and the owner mask no longer matched it.
    r = router()
    vector = random_unit(11)
    assert r.offer(candidate("p", embedding=vector, fingerprint="v1")).outcome == "sent"
    batch = [
        candidate("a", 0.99, embedding=random_unit(12)),
        candidate("b", 0.98, embedding=random_unit(13)),
        candidate("p", 0.5, embedding=vector, fingerprint="v2"),
    ]
    assert [d.outcome for d in r.offer_batch(batch)] == ["sent", "sent", "sent"]
