"""Two matchers regrouping products of one offer group at the same time, on the real stack.

Workers of one consumer group match different products concurrently, and two
products of one group may land on two workers. Each regrouping reads the
neighbours' offer documents, changes their edges and groups, and writes them
back. Here two ``OfferMatcher`` instances (two Elasticsearch and Milvus clients,
one thread each, as two worker processes would be) are made to interleave in
the worst order: both read everything they need before either writes (a
barrier before each one's first write). Without the conditional writes the
second write of the shared neighbour's document drops the first one's edge,
the two new offers never see each other, and a delete racing an add brings
the deleted offer back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from catstream.settings import Settings
from schemas.events import ProductEmbedding
from schemas.vectors import encode_vector
from streams.match_candidates import MatchBackends, Vectors, Version, WriteConflict
from streams.matching import MatchInput, OfferMatcher
from tests.integration.offer_feed import catalogue, offers
from tests.integration.test_offer_matching import matcher_repository  # noqa: F401 (fixture)
from triton_models.categoriser.encoder import shared_encoder
from triton_models.matcher.pair_model import load_served
from triton_models.matcher.records import embedding_sentence, record_from_fields
from workers.elasticsearch_index import elasticsearch_client
from workers.milvus_collection import CollectionSpec, connect, ensure_collection
from workers.milvus_sink import embedding_row
from workers.offer_index import offer_index

FAMILY = ("shopa-0", "bestbuyz-0", "megamart-0")  # one product, three merchants


class RacingBackends(MatchBackends):
    """The real backends; the first write waits until the other matcher is ready to write."""

    def __init__(self, settings: Settings, barrier: threading.Barrier) -> None:
        super().__init__(settings, elasticsearch_client(settings))
        self.barrier = barrier
        self.first = True

    def write(self, *args: Any, **kwargs: Any) -> Any:
        if self.first:
            self.first = False
            self.barrier.wait(timeout=120)
        return super().write(*args, **kwargs)


class CutBackends(MatchBackends):
    """The real backends; the adder's first write is cut after its first document, and
    the remover's whole first write runs in the cut (both have read everything first)."""

    def __init__(
        self,
        settings: Settings,
        barrier: threading.Barrier,
        cut: threading.Event,
        done: threading.Event,
        *,
        adder: bool,
    ) -> None:
        super().__init__(settings, elasticsearch_client(settings))
        self.barrier, self.cut, self.done, self.adder = barrier, cut, done, adder
        self.first = True

    def write(
        self, upserts: dict[str, dict[str, Any]], deletes: list[str], expected: dict[str, Version]
    ) -> dict[str, Version]:
        if not self.first:
            return super().write(upserts, deletes, expected)
        self.first = False
        self.barrier.wait(timeout=120)
        if not self.adder:
            assert self.cut.wait(timeout=120)
            try:
                return super().write(upserts, deletes, expected)
            finally:
                self.done.set()
        head = min(upserts)
        written = super().write({head: upserts[head]}, [], expected)
        self.cut.set()
        assert self.done.wait(timeout=120)
        rest = {pid: doc for pid, doc in upserts.items() if pid != head}
        try:
            return {**written, **super().write(rest, deletes, expected)}
        except WriteConflict as exc:
            raise WriteConflict(exc.product_ids, sorted({*written, *exc.written})) from exc


@pytest.fixture
def inputs(topic_settings: Settings) -> Iterator[dict[str, MatchInput]]:
    """The family's offers as the agent sees them, their vectors written to Milvus."""
    rows = [r for r in offers(catalogue()) if r["product_id"] in FAMILY]
    records = [record_from_fields(r["fields"], product_id=r["product_id"]) for r in rows]
    vectors = shared_encoder().encode([embedding_sentence(r) for r in records])
    spec = CollectionSpec.from_settings(topic_settings)
    milvus = connect(topic_settings)
    found: dict[str, MatchInput] = {}
    try:
        ensure_collection(milvus, spec)
        milvus_rows = []
        for row, vector in zip(rows, vectors, strict=True):
            fields = {k: v for k, v in row["fields"].items() if v is not None}
            text = [float(x) for x in vector]
            event = ProductEmbedding(
                product_id=row["product_id"],
                model_version="test",
                text_embedding=encode_vector(vector),
                category_ids=[row["cat_l1"]],
                category_path=["test"],
                fingerprint="fp",
                updated_at=fields.get("updated_at"),
            )
            milvus_rows.append(embedding_row(event, spec))
            found[row["product_id"]] = MatchInput(
                product_id=row["product_id"],
                fields=json.loads(json.dumps(fields, default=str)),
                vectors=Vectors(text, None),
                cat_l1=row["cat_l1"],
                updated_at=fields.get("updated_at"),
                fingerprint="fp",
            )
        milvus.upsert(spec.name, milvus_rows)
        yield found
    finally:
        milvus.close()


def _matchers(
    settings: Settings, repository: Path
) -> tuple[OfferMatcher, OfferMatcher, OfferMatcher]:
    """A serial matcher for the set-up, and two racing ones."""
    model = load_served(repository)
    barrier = threading.Barrier(2)
    serial = OfferMatcher(settings, model, MatchBackends(settings, elasticsearch_client(settings)))
    first = OfferMatcher(settings, model, RacingBackends(settings, barrier))
    second = OfferMatcher(settings, model, RacingBackends(settings, barrier))
    return serial, first, second


def _concurrently(*calls: Callable[[], object]) -> None:
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a matcher hung"
    assert not errors, errors


def _stored(settings: Settings) -> dict[str, dict[str, Any]]:
    es = elasticsearch_client(settings)
    try:
        es.indices.refresh(index=offer_index(settings))
        hits = es.search(index=offer_index(settings), size=100)["hits"]["hits"]
    finally:
        es.close()
    return {hit["_id"]: hit["_source"] for hit in hits}


def _assert_consistent(stored: dict[str, dict[str, Any]], groups: list[set[str]]) -> None:
    """Edges are kept on both ends, nothing points at a missing offer, groups are ``groups``."""
    for pid, doc in stored.items():
        for other in doc.get("edges") or {}:
            assert other in stored, f"{pid} keeps an edge to {other}, which is gone"
            assert pid in (stored[other].get("edges") or {}), f"{pid}->{other} is one-sided"
    by_group: dict[str, set[str]] = {}
    for pid, doc in stored.items():
        by_group.setdefault(doc["offer_group"], set()).add(pid)
    assert sorted(map(sorted, by_group.values())) == sorted(map(sorted, groups)), stored


def test_two_matchers_add_offers_to_one_group_at_once(
    topic_settings: Settings,
    matcher_repository: Path,  # noqa: F811 (the imported fixture)
    inputs: dict[str, MatchInput],
) -> None:
    serial, first, second = _matchers(topic_settings, matcher_repository)
    serial.match(inputs["shopa-0"])
    # Both read shopa-0's document (and find no offer of each other), then both write it.
    _concurrently(
        lambda: first.match(inputs["bestbuyz-0"]), lambda: second.match(inputs["megamart-0"])
    )
    stored = _stored(topic_settings)
    _assert_consistent(stored, [set(FAMILY)])
    # The two that raced matched each other too: without shopa-0 they stay one group.
    serial.remove("shopa-0")
    _assert_consistent(_stored(topic_settings), [{"bestbuyz-0", "megamart-0"}])


def test_a_delete_racing_an_add_stays_deleted(
    topic_settings: Settings,
    matcher_repository: Path,  # noqa: F811 (the imported fixture)
    inputs: dict[str, MatchInput],
) -> None:
    serial, first, second = _matchers(topic_settings, matcher_repository)
    serial.match(inputs["shopa-0"])
    serial.match(inputs["bestbuyz-0"])
    _assert_consistent(_stored(topic_settings), [{"shopa-0", "bestbuyz-0"}])
    # One worker deletes shopa-0 while another adds megamart-0, which matches it.
    _concurrently(lambda: first.remove("shopa-0"), lambda: second.match(inputs["megamart-0"]))
    stored = _stored(topic_settings)
    assert "shopa-0" not in stored, "the deleted offer came back"
    _assert_consistent(stored, [{"bestbuyz-0", "megamart-0"}])


def test_a_delete_cut_into_an_adds_write_stays_deleted(
    topic_settings: Settings,
    matcher_repository: Path,  # noqa: F811 (the imported fixture)
    inputs: dict[str, MatchInput],
) -> None:
    """The order CI once hit: the adder writes the shared neighbour, the remover's write
    of it conflicts, then the adder writes the removed offer. The remover must not
    delete its document while a neighbour may still point at it."""
    serial, _, _ = _matchers(topic_settings, matcher_repository)
    serial.match(inputs["shopa-0"])
    serial.match(inputs["bestbuyz-0"])
    model = load_served(matcher_repository)
    barrier, cut, done = threading.Barrier(2), threading.Event(), threading.Event()
    remover = OfferMatcher(
        topic_settings, model, CutBackends(topic_settings, barrier, cut, done, adder=False)
    )
    adder = OfferMatcher(
        topic_settings, model, CutBackends(topic_settings, barrier, cut, done, adder=True)
    )
    _concurrently(lambda: remover.remove("shopa-0"), lambda: adder.match(inputs["megamart-0"]))
    stored = _stored(topic_settings)
    assert "shopa-0" not in stored, "the deleted offer came back"
    _assert_consistent(stored, [{"bestbuyz-0", "megamart-0"}])


def test_an_edge_to_an_offer_that_is_gone_is_dropped_on_the_next_regrouping(
    topic_settings: Settings,
    matcher_repository: Path,  # noqa: F811 (the imported fixture)
    inputs: dict[str, MatchInput],
) -> None:
    """What an older version's lost race (or a hand-edited index) left: bestbuyz-0 points
    at shopa-0, whose document is gone. Regrouping bestbuyz-0's region repairs it."""
    serial, _, _ = _matchers(topic_settings, matcher_repository)
    serial.match(inputs["shopa-0"])
    serial.match(inputs["bestbuyz-0"])
    es = elasticsearch_client(topic_settings)
    try:
        es.delete(index=offer_index(topic_settings), id="shopa-0", refresh="wait_for")
    finally:
        es.close()
    assert "shopa-0" in _stored(topic_settings)["bestbuyz-0"]["edges"]
    serial.match(inputs["megamart-0"])
    _assert_consistent(_stored(topic_settings), [{"bestbuyz-0", "megamart-0"}])


def test_two_new_offers_of_one_product_find_each_other(
    topic_settings: Settings,
    matcher_repository: Path,  # noqa: F811 (the imported fixture)
    inputs: dict[str, MatchInput],
) -> None:
    _, first, second = _matchers(topic_settings, matcher_repository)
    # Neither is in the offer index when the other searches: they must look again after writing.
    _concurrently(
        lambda: first.match(inputs["bestbuyz-0"]), lambda: second.match(inputs["megamart-0"])
    )
    _assert_consistent(_stored(topic_settings), [{"bestbuyz-0", "megamart-0"}])


def test_groups_changed_since_they_were_published_are_published_again(
    topic_settings: Settings,
    matcher_repository: Path,  # noqa: F811 (the imported fixture)
    inputs: dict[str, MatchInput],
) -> None:
    """Another worker regrouped shopa-0 after this one read it: its event may have landed
    on products.matches first, so ``refreshed`` gives shopa-0's stored group to publish."""
    serial, _, other = _matchers(topic_settings, matcher_repository)
    first = serial.match(inputs["shopa-0"])
    assert [e.members for e in first.events] == [["shopa-0"]]
    assert serial.refreshed(first.versions) == ([], [], {})  # nothing changed since
    other.backends.first = False  # type: ignore[attr-defined]  # no race partner here
    other.match(inputs["bestbuyz-0"])
    events, gone, versions = serial.refreshed(first.versions)
    assert [(e.product_id, e.members) for e in events] == [("shopa-0", ["bestbuyz-0", "shopa-0"])]
    assert gone == []
    assert serial.refreshed(versions) == ([], [], {})
    serial.remove("shopa-0")
    assert serial.refreshed(versions)[1] == ["shopa-0"]  # deleted since: a tombstone
