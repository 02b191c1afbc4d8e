"""The order /review hands items out in: diverse margin batches, one random sample in ten."""

from __future__ import annotations

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from schemas.events import Label, ModelDecision, Prediction, ReviewItem
from workers.review_selection import (
    SAMPLE_EVERY,
    diverse_margin,
    next_batch,
    review_vectors,
    serving_order,
)
from workers.review_state import ReviewState

COLOURS = ["red", "blue", "green", "pink", "black", "white", "grey", "gold", "navy", "teal"]
OTHERS = [
    "Wooden Train Set with 40 pieces",
    "Unicorn Jigsaw Puzzle 1000 pieces",
    "Family Strategy Board Game",
    "Plush Teddy Bear 30 cm",
    "Remote Control Racing Car",
    "Watercolour Paint Set for Kids",
    "Magnetic Building Tiles 60 pieces",
    "Doll House with Furniture",
]


def item(
    product_id: str, title: str, uncertainty: float, at: int, sample: bool = False
) -> ReviewItem:
    return ReviewItem(
        product_id=product_id,
        uncertainty=uncertainty,
        measure="margin",
        candidates=[],
        model_version="1",
        fingerprint=f"fp-{product_id}",
        title=title,
        brand="Acme",
        created_at=at,
        random_sample=sample,
    )


def catalogue() -> list[ReviewItem]:
    """Ten colours of one confusing product (most uncertain) and eight different products."""
    copies = [
        item(f"copy-{c}", f"Acme Stacking Rings Toy {c}", 0.99 - i * 0.001, i)
        for i, c in enumerate(COLOURS)
    ]
    others = [item(f"other-{i}", t, 0.9 - i * 0.01, 100 + i) for i, t in enumerate(OTHERS)]
    return copies + others


def test_margin_alone_spends_a_batch_on_copies_diverse_margin_spreads_it() -> None:
    items = catalogue()
    vectors = review_vectors([f"{i.title} {i.brand}" for i in items])
    picked = [
        items[i].product_id for i in diverse_margin(vectors, [i.uncertainty for i in items], 5)
    ]
    by_margin = [i.product_id for i in sorted(items, key=lambda i: -i.uncertainty)[:5]]
    assert all(p.startswith("copy-") for p in by_margin)
    assert sum(p.startswith("copy-") for p in picked) <= 2
    assert len(set(picked)) == 5
    # most uncertain first, and deterministic
    assert picked == [
        items[i].product_id for i in diverse_margin(vectors, [i.uncertainty for i in items], 5)
    ]
    ranks = {i.product_id: i.uncertainty for i in items}
    assert [ranks[p] for p in picked] == sorted((ranks[p] for p in picked), reverse=True)


def test_a_batch_no_larger_than_the_pool_takes_everything() -> None:
    items = catalogue()[:3]
    vectors = review_vectors([i.title or "" for i in items])
    assert sorted(diverse_margin(vectors, [0.5, 0.9, 0.7], 5)) == [0, 1, 2]
    assert diverse_margin(vectors, [0.5, 0.9, 0.7], 0) == []


def test_one_random_sample_is_due_after_every_nine_others() -> None:
    items = catalogue() + [item(f"sample-{i}", f"Sample {i}", 0.1, 50 + i, True) for i in range(3)]
    order = [i.product_id for i in serving_order(items, "margin")]
    assert [order.index(f"sample-{i}") for i in range(3)] == [0, 10, 20]  # 18 others, then the last
    # four answers since the last sample: the next one is due after five more
    later = [i.product_id for i in serving_order(items, "margin", answered_since_sample=4)]
    assert later.index("sample-0") == SAMPLE_EVERY - 1 - 4
    oldest = [i.product_id for i in serving_order(items, "oldest")]
    assert oldest == [i.product_id for i in sorted(items, key=lambda i: i.created_at)]


def test_the_review_state_serves_its_batch_until_it_is_answered(tmp_path: object) -> None:
    taxonomy = Taxonomy.load(Settings().taxonomy_path)
    state = ReviewState(taxonomy, query_batch=3)
    for one in catalogue():
        state.add_item(one)
    first = state.serving_queue()
    batch = list(state.batch)
    assert len(batch) == 3
    assert [i.product_id for i in first[:3]] == batch
    assert batch == next_batch(state.queue(), 3)
    path = "Toys & Games > Toys"
    for number, product_id in enumerate(batch[:2]):
        state.add_label(Label(product_id=product_id, category=path, labelled_at=10_000 + number))
    assert state.serving_queue()[0].product_id == batch[2]  # the batch is kept, not re-picked
    assert state.batch == batch
    state.add_label(Label(product_id=batch[2], category=path, labelled_at=10_003))
    assert state.answered_since_sample == SAMPLE_EVERY - 1 + 3
    state.serving_queue()
    assert state.batch != batch  # all answered: the next batch is picked from what waits
    assert not set(state.batch) & set(batch)


def test_random_samples_come_first_until_retrain_has_its_holdout() -> None:
    taxonomy = Taxonomy.load(Settings().taxonomy_path)
    state = ReviewState(taxonomy, query_batch=3, min_holdout=2)
    for one in catalogue() + [item(f"s-{i}", f"Sample {i}", 0.1, 50 + i, True) for i in range(4)]:
        state.add_item(one)
    path = "Toys & Games > Toys"
    for number in range(2):
        assert state.serving_queue()[0].product_id == f"s-{number}"
        label = Label(product_id=f"s-{number}", category=path, labelled_at=10_000 + number)
        state.add_label(label.model_copy(update={"random_sample": True}))
    # two holdout labels: now one sample after every nine others
    order = [i.product_id for i in state.serving_queue()]
    assert order.index("s-2") == SAMPLE_EVERY - 1


def test_the_dashboard_serves_a_promoted_version_before_the_next_prediction() -> None:
    state = ReviewState(Taxonomy.load(Settings().taxonomy_path))

    def prediction(product_id: str, version: str, at: int) -> Prediction:
        return Prediction(
            product_id=product_id,
            model_name="categoriser",
            model_version=version,
            confidence=0.5,
            uncertainty=0.5,
            needs_review=False,
            fingerprint="f",
            predicted_at=at,
        )

    state.add_prediction(prediction("a", "3", 1_000))
    assert state.served_version == "3"
    state.add_decision(
        ModelDecision(
            challenger_version=4,
            champion_version=3,
            decision="promoted",
            served_version=4,
            challenger_score=0.7,
            margin=0.01,
            holdout_size=30,
            training_labels=100,
            reason="better",
            decided_at=2_000,
        )
    )
    assert state.served_version == "4"  # the stream is idle: no prediction since
    state.add_prediction(prediction("b", "4", 3_000))
    assert state.served_version == "4"


def test_the_default_order_is_diverse_margin() -> None:
    assert Settings().review_order == "diverse_margin"
