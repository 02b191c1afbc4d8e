"""The review app's pure parts: taxonomy search, the queue state, leases, charts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from schemas.events import CategoryScore, Label, ModelDecision, ReviewItem
from workers.review_charts import accuracy_chart, labels_chart
from workers.review_leases import LeaseStore
from workers.review_state import ReviewState
from workers.taxonomy_search import TaxonomySearch, words


@pytest.fixture(scope="module")
def google() -> Taxonomy:
    return Taxonomy.load(Settings().taxonomy_path)


@pytest.fixture(scope="module")
def search(google: Taxonomy) -> TaxonomySearch:
    return TaxonomySearch(google)


def test_the_google_taxonomy_is_the_whole_tree(google: Taxonomy) -> None:
    assert len(google) == 5582


def test_search_matches_any_words_of_a_path_as_prefixes(search: TaxonomySearch) -> None:
    hits = search.search("dolls playsets")
    paths = [h.path for h in hits]
    assert "Toys & Games > Toys > Dolls, Playsets & Toy Figures" in paths
    # words from different levels of the path, and a prefix of the last one
    deep = search.search("toys pretend kitch")
    assert any(h.path.endswith("Toy Kitchens & Play Food > Toy Kitchens") for h in deep)
    assert all({"toys", "pretend"} <= set(words(h.path)) for h in deep)
    assert search.search("zzqx") == []
    assert search.search("   ") == []


def test_search_ranks_the_category_named_by_the_words_first(search: TaxonomySearch) -> None:
    first = search.search("board games")[0]
    assert first.path == "Toys & Games > Games > Board Games"


def test_search_folds_case_and_accents(search: TaxonomySearch) -> None:
    assert search.search("BOARD GÄMES")[0].path == search.search("board games")[0].path


def test_search_refuses_an_overlong_query(search: TaxonomySearch) -> None:
    with pytest.raises(ValueError, match="characters"):
        search.search("x" * 1000)


def test_every_search_of_the_google_taxonomy_takes_under_100_ms(search: TaxonomySearch) -> None:
    # The worst cases are one-letter prefixes that match most of the tree.
    worst = 0.0
    for query in ["a", "e", "s", "t", "c", "toy", "home garden", "a b c d e f g h"]:
        started = time.process_time()
        search.search(query)
        worst = max(worst, time.process_time() - started)
    assert worst < 0.1, f"slowest search took {worst * 1000:.0f} ms of CPU"


# ------------------------------------------------------------------ state


def item(product_id: str, created_at: int, *, sample: bool = False, top: int = 1) -> ReviewItem:
    return ReviewItem(
        product_id=product_id,
        uncertainty=0.5,
        measure="margin",
        candidates=[CategoryScore(id=top, path="Animals & Pet Supplies", score=0.6, level=1)],
        model_version="3",
        fingerprint="f",
        created_at=created_at,
        random_sample=sample,
    )


def label(product_id: str, at: int, category: str = "Animals & Pet Supplies") -> Label:
    return Label(product_id=product_id, category=category, labeller="ann", labelled_at=at)


def test_queue_is_oldest_first_and_answered_items_leave_it(google: Taxonomy) -> None:
    state = ReviewState(google)
    state.add_item(item("b", 2000))
    state.add_item(item("a", 1000))
    state.add_item(item("c", 3000))
    assert [i.product_id for i in state.queue()] == ["a", "b", "c"]
    state.add_label(label("b", 2500))
    assert [i.product_id for i in state.queue()] == ["a", "c"]
    # an older label does not answer a newer item of the product
    state.add_label(label("c", 100))
    assert [i.product_id for i in state.queue()] == ["a", "c"]
    # a newer item of a labelled product (it changed) is back in the queue
    state.add_item(item("b", 4000))
    assert [i.product_id for i in state.queue()] == ["a", "c", "b"]


def test_holdout_accuracy_counts_only_random_samples_and_the_latest_label(
    google: Taxonomy,
) -> None:
    state = ReviewState(google)
    pets = google.resolve("Animals & Pet Supplies")
    state.add_item(item("s1", 1000, sample=True, top=pets))
    state.add_item(item("s2", 1000, sample=True, top=pets))
    state.add_item(item("u1", 1000, sample=False, top=pets))
    state.add_label(label("s1", 2000))
    state.add_label(label("s2", 2000, category="Toys & Games"))
    state.add_label(label("u1", 2000))
    (score,) = state.version_scores()
    assert (score.version, score.correct, score.total) == ("3", 1, 2)
    state.add_label(label("s2", 3000))  # relabelled: its vote is replaced, not added
    (score,) = state.version_scores()
    assert (score.correct, score.total) == (2, 2)


def test_verdict_labels_carry_no_category() -> None:
    Label(product_id="p", category="", verdict="not_a_product")
    with pytest.raises(ValueError, match="blank"):
        Label(product_id="p", category=" ")
    with pytest.raises(ValueError, match="carries no category"):
        Label(product_id="p", category="Toys & Games", verdict="cant_tell")


def test_labels_per_hour(google: Taxonomy) -> None:
    state = ReviewState(google)
    now = 10 * 3_600_000
    for at in (now - 10, now - 20, now - 3_600_000 - 5, now - 30 * 3_600_000):
        state.add_label(label(f"p{at}", at))
    state.add_label(label(f"p{now - 10}", now - 10))  # read back from Kafka: not twice
    counts = state.labels_per_hour(now)
    assert counts[-1] == 2
    assert counts[-2] == 1
    assert sum(counts) == 3


# ------------------------------------------------------------------ leases


def test_two_labellers_never_hold_the_same_item(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.sqlite", ttl_s=60)
    first = store.take_first("ann", ["a", "b"], now=0)
    second = store.take_first("bob", ["a", "b"], now=0)
    assert first is not None
    assert second is not None
    assert (first.product_id, second.product_id) == ("a", "b")
    assert store.take_first("cid", ["a", "b"], now=1) is None
    # asking again gives a labeller the item they already hold
    again = store.take_first("ann", ["a", "b"], now=2)
    assert again is not None
    assert again.product_id == "a"


def test_an_unanswered_lease_returns_to_the_queue_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    store = LeaseStore(tmp_path / "leases.sqlite", ttl_s=60)
    assert store.take_first("ann", ["a"], now=0) is not None
    store.close()
    reopened = LeaseStore(tmp_path / "leases.sqlite", ttl_s=60)  # an API restart
    assert reopened.take_first("bob", ["a"], now=59) is None
    lease = reopened.take_first("bob", ["a"], now=61)
    assert lease is not None
    assert lease.labeller == "bob"


def test_a_skip_hides_the_item_from_that_labeller_only(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.sqlite", ttl_s=60)
    store.take_first("ann", ["a", "b"], now=0)
    store.skip("a", "ann", now=1)
    lease = store.take_first("ann", ["a", "b"], now=2)
    assert lease is not None
    assert lease.product_id == "b"
    other = store.take_first("bob", ["a", "b"], now=2)
    assert other is not None
    assert other.product_id == "a"


# ------------------------------------------------------------------ charts


def test_charts_escape_what_they_show(google: Taxonomy) -> None:
    state = ReviewState(google)
    hostile = item("x", 1000, sample=True)
    state.add_item(hostile.model_copy(update={"model_version": "<script>alert(1)</script>"}))
    state.add_label(label("x", 2000))
    svg = str(accuracy_chart(state.version_scores(), []))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    decision = ModelDecision(
        challenger_version=4,
        champion_version=3,
        decision="promoted",
        served_version=4,
        champion_score=0.5,
        challenger_score=0.7,
        margin=0.01,
        holdout_size=30,
        training_labels=100,
        reason="better",
    )
    assert "retrain promoted" in str(accuracy_chart([], [decision]))
    assert str(labels_chart([0, 3, 1])).count("<rect") == 3
