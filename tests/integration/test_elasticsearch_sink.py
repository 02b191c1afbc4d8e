"""The Elasticsearch sink against real Kafka and a real Elasticsearch API (noida-db).

Normalised products, predictions and deletes go to unique topics; the sink
runner consumes them in a thread; the tests then read the index back.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from elasticsearch import Elasticsearch

from catstream.kafka_config import librdkafka_config
from catstream.metrics import REGISTRY
from catstream.settings import Settings
from schemas.events import CategoryScore, NormalisedProduct, Prediction
from streams.topics import create_topics
from tests.integration.running_worker import dead_letters
from workers.elasticsearch_index import elasticsearch_client, ensure_indices
from workers.elasticsearch_sink import build_elasticsearch_sink_runner
from workers.sink_runner import SinkRunner

WAIT_S = 60.0
Record = tuple[str, str, NormalisedProduct | Prediction | None]  # (topic key, product id, event)


# ----------------------------------------------------------------------- helpers


def product(
    pid: str, version: int, *, op: str = "upsert", title: str | None = None
) -> NormalisedProduct:
    return NormalisedProduct(
        product_id=pid,
        op=op,  # type: ignore[arg-type]
        updated_at=version,
        title=title or f"{pid} leather boot v{version}",
        description="warm winter boot",
        brand="Acme",
        category_path=["Apparel & Accessories", "Shoes"],
        price="59.90",
        currency="EUR",
        raw={"ProductName": title or pid, "Weird Field": {"nested": [1, "x"]}},
        fingerprint=f"fp-{pid}-{version}",
    )


def prediction(pid: str, version: int, *, leaf: str = "Boots") -> Prediction:
    root = CategoryScore(id=166, path="Apparel & Accessories", score=0.95, level=1)
    mid = CategoryScore(id=187, path="Apparel & Accessories > Shoes", score=0.9, level=2)
    top = CategoryScore(id=1000 + len(leaf), path=f"{mid.path} > {leaf}", score=0.8, level=3)
    return Prediction(
        product_id=pid,
        model_name="categoriser",
        model_version=f"v{version}",
        categories=[root, mid, top],
        top_category=top,
        confidence=0.8,
        uncertainty=0.1,
        needs_review=False,
        fingerprint=f"fp-{pid}-{version}",
        updated_at=version,
    )


def produce(settings: Settings, records: list[Record]) -> None:
    producer = Producer(librdkafka_config(settings, **{"linger.ms": 5}))
    for topic_key, pid, event in records:
        value = event.model_dump_json().encode() if event is not None else None
        producer.produce(settings.topic(topic_key), key=pid.encode(), value=value)
    assert producer.flush(30) == 0, "producer could not deliver every record to Kafka"


def consumed_everything(settings: Settings) -> bool:
    """True when the sink's group has committed up to the end of both topics."""
    probe = Consumer(
        librdkafka_config(settings, **{"group.id": f"{settings.app_id}-elasticsearch-sink"})
    )
    try:
        for topic in (settings.topic("normalised"), settings.topic("predictions")):
            partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
            committed = probe.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            for tp in committed:
                _, high = probe.get_watermark_offsets(tp, timeout=10)
                if high > 0 and tp.offset < high:
                    return False
        return True
    finally:
        probe.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


class RunningSink:
    """The worker's Elasticsearch sink runner in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.runner: SinkRunner = build_elasticsearch_sink_runner(settings, batch_size=40)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="es-sink-test", daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # surfaced by the test; a thread cannot raise to it
            self.errors.append(exc)

    def __enter__(self) -> RunningSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "sink runner did not stop within 30 s"


def documents(client: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    client.indices.refresh(index=index)
    hits = client.search(index=index, size=1000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sink_settings(topic_settings: Settings) -> Settings:
    # A unique app id gives each test its own consumer group.
    settings = topic_settings.model_copy(update={"app_id": f"test-{uuid.uuid4().hex[:8]}"})
    create_topics(settings)
    return settings


# ------------------------------------------------------------------------- tests


def test_products_and_predictions_make_one_document_each_and_deletes_disappear(
    sink_settings: Settings,
) -> None:
    pids = [f"p{i:03d}" for i in range(60)]
    records: list[Record] = []
    for pid in pids:
        records += [
            ("normalised", pid, product(pid, 1000)),
            ("predictions", pid, prediction(pid, 1000)),
        ]
    deleted = pids[::6]  # 10 deletes, each followed by the prediction tombstone
    for pid in deleted:
        records += [
            ("normalised", pid, product(pid, 2000, op="delete")),
            ("predictions", pid, None),
        ]
    # Deleted, then re-created later: must exist at the end.
    records += [("normalised", "p000", product("p000", 3000, title="p000 is back"))]
    # Created and deleted inside one batch: must not exist.
    records += [
        ("normalised", "gone", product("gone", 10)),
        ("normalised", "gone", product("gone", 20, op="delete")),
    ]
    # A price Elasticsearch cannot parse: dead letter, never a stuck sink.
    records += [("normalised", "bad", product("bad", 10).model_copy(update={"price": "cheap"}))]
    produce(sink_settings, records)

    client = elasticsearch_client(sink_settings)
    index = sink_settings.elasticsearch_index
    expected = len(pids) - len(deleted) + 1
    with RunningSink(sink_settings) as sink:
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume every record")
        assert count(client, index) == expected
        stale_before = metric("catstream_stale_events_total")
        # A replay (crash before commit) must change nothing and add no duplicates.
        produce(sink_settings, records)
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume the replay")
        assert count(client, index) == expected
        assert metric("catstream_stale_events_total") - stale_before >= len(pids)
    assert not sink.errors

    docs = documents(client, index)
    assert set(docs) == (set(pids) - set(deleted)) | {"p000"}
    assert docs["p000"]["title"] == "p000 is back"
    assert "prediction" not in docs["p000"]  # its prediction was for the deleted version
    doc = docs["p001"]
    # Both topics wrote their part and neither clobbered the other.
    assert doc["title"] == "p001 leather boot v1000"
    assert doc["raw"]["Weird Field"] == {"nested": [1, "x"]}
    assert doc["prediction"]["model_version"] == "v1000"
    assert doc["category"]["ids"] == [166, 187, 1005]
    assert doc["category"]["l2"] == "Apparel & Accessories > Shoes"
    assert doc["feed_category"]["path"] == "Apparel & Accessories > Shoes"

    hierarchy = client.count(
        index=index, query={"term": {"category.path": "Apparel & Accessories"}}
    )
    assert hierarchy["count"] == expected - 1  # all but p000, which has no prediction

    letters = dead_letters(sink_settings, expected=2)  # the bad record, once per publish
    assert len(letters) == 2
    assert all("price" in letter["reason"] and "replay" in letter["reason"] for letter in letters)


def test_out_of_order_events_never_regress_a_document(sink_settings: Settings) -> None:
    records: list[Record] = [
        # v2 then v1 of the same product, in separate batches of one topic.
        ("normalised", "ooo", product("ooo", 2000, title="ooo version two")),
        ("predictions", "ooo", prediction("ooo", 2000, leaf="Boots")),
    ]
    produce(sink_settings, records)
    client = elasticsearch_client(sink_settings)
    index = sink_settings.elasticsearch_index
    with RunningSink(sink_settings) as sink:
        wait_for(lambda: consumed_everything(sink_settings), "the first versions")
        produce(
            sink_settings,
            [
                ("normalised", "ooo", product("ooo", 1000, title="ooo version one")),
                ("predictions", "ooo", prediction("ooo", 1000, leaf="Sandals")),
                # A delete that is older than the stored document is ignored.
                ("normalised", "ooo", product("ooo", 1500, op="delete")),
                # A delete that arrives before the (older) upsert wins over it.
                ("normalised", "late", product("late", 5000, op="delete")),
                ("normalised", "late", product("late", 4000)),
                ("predictions", "late", prediction("late", 4000)),
            ],
        )
        wait_for(lambda: consumed_everything(sink_settings), "the stale versions")
    assert not sink.errors

    docs = documents(client, index)
    assert set(docs) == {"ooo"}
    assert docs["ooo"]["title"] == "ooo version two"
    assert docs["ooo"]["category"]["path"].endswith("> Boots")
    assert docs["ooo"]["versions"] == {
        "normalised": 2000,
        "prediction": 2000,
        "prediction_at": docs["ooo"]["prediction"]["predicted_at"],
    }


def test_index_creation_is_idempotent_and_strict(topic_settings: Settings) -> None:
    client = elasticsearch_client(topic_settings)
    index = topic_settings.elasticsearch_index
    ensure_indices(client, topic_settings)
    ensure_indices(client, topic_settings)
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["raw"] == {"type": "object", "enabled": False}
    tokens = client.indices.analyze(index=index, analyzer="category_path", text="A > B > C")
    assert [t["token"] for t in tokens["tokens"]] == ["A", "A > B", "A > B > C"]


class ElasticsearchGate:
    """A real TCP forwarder to Elasticsearch on its own port: closed, nothing listens there."""

    def __init__(self, target_url: str) -> None:
        host_port = target_url.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        self.target = (host, int(port))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        sink.close()


def test_an_unreachable_elasticsearch_delays_the_sink_but_loses_nothing(
    sink_settings: Settings,
) -> None:
    gate = ElasticsearchGate(sink_settings.elasticsearch_url)
    settings = sink_settings.model_copy(update={"elasticsearch_url": gate.url})
    pids = [f"w{i:02d}" for i in range(30)]
    produce(settings, [("normalised", pid, product(pid, 1000)) for pid in pids])
    retries_before = metric("catstream_sink_retries_total", sink="elasticsearch")
    with RunningSink(settings) as sink:
        # Several failed attempts, however long each takes: nothing may be committed meanwhile.
        wait_for(
            lambda: (
                metric("catstream_sink_retries_total", sink="elasticsearch") >= retries_before + 3
            ),
            "the sink to retry three times",
        )
        assert not consumed_everything(settings)
        assert metric("catstream_degraded", dependency="elasticsearch") == 1
        gate.open()
        try:
            wait_for(lambda: consumed_everything(settings), "the sink to catch up after the outage")
        finally:
            gate.close()
        assert metric("catstream_degraded", dependency="elasticsearch") == 0
    assert not sink.errors
    client = elasticsearch_client(sink_settings)
    assert set(documents(client, sink_settings.elasticsearch_index)) == set(pids)


# Ids that are syntax elsewhere (queries, URLs, JSON, Milvus filters): each is one id.
HOSTILE_IDS = [
    "x'] or product_id not in ['",
    'q" or product_id != "',
    "back\\slash\\",
    "a/../b%2F?x=1#frag",
    "*",
    "_all",
    '{"query": {"match_all": {}}}',
    "ünï©ødé ☃ 商品",
]


def test_ids_with_syntax_round_trip_and_delete_only_themselves(sink_settings: Settings) -> None:
    plain = [f"p{i:02d}" for i in range(10)]
    everyone = [*plain, *HOSTILE_IDS]
    records: list[Record] = []
    for pid in everyone:
        records += [
            ("normalised", pid, product(pid, 1000)),
            ("predictions", pid, prediction(pid, 1000)),
        ]
    produce(sink_settings, records)
    client = elasticsearch_client(sink_settings)
    index = sink_settings.elasticsearch_index
    with RunningSink(sink_settings) as sink:
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume every record")
        docs = documents(client, index)
        assert set(docs) == set(everyone)
        assert all(docs[pid]["product_id"] == pid for pid in everyone)
        assert all(docs[pid]["prediction"]["model_version"] == "v1000" for pid in everyone)
        deletes: list[Record] = []
        for pid in HOSTILE_IDS:
            deletes += [
                ("normalised", pid, product(pid, 2000, op="delete")),
                ("predictions", pid, None),
            ]
        produce(sink_settings, deletes)
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume the deletes")
    assert not sink.errors
    assert set(documents(client, index)) == set(plain)


class CountingClient:
    """An Elasticsearch client that counts the documents the sink reads and writes."""

    def __init__(self, client: Elasticsearch) -> None:
        self.client = client
        self.read = 0
        self.written = 0

    def mget(self, docs: list[dict[str, Any]], **kwargs: Any) -> Any:
        self.read += len(docs)
        return self.client.mget(docs=docs, **kwargs)

    def bulk(self, operations: list[dict[str, Any]], **kwargs: Any) -> Any:
        response = self.client.bulk(operations=operations, **kwargs)
        self.written += len(response["items"])
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_each_event_is_one_write_and_no_read_of_the_document(sink_settings: Settings) -> None:
    """Before: every flush read each product's document and tombstone, then re-indexed the
    whole document: a product (normalised event, then its prediction) cost four documents
    read and two whole documents written. Now: one write per event, the tombstone read
    once, and the prediction sends only its own fields."""
    from workers.elasticsearch_sink import ElasticsearchSink
    from workers.sink import SinkMessage

    counting = CountingClient(elasticsearch_client(sink_settings))
    sink = ElasticsearchSink(sink_settings, client=counting)  # type: ignore[arg-type]
    pids = [f"c{i}" for i in range(50)]

    def flush(topic_key: str, events: list[NormalisedProduct | Prediction]) -> None:
        for offset, event in enumerate(events):
            sink.add(
                SinkMessage(
                    topic=sink_settings.topic(topic_key),
                    partition=0,
                    offset=offset,
                    key=event.product_id.encode(),
                    value=event.model_dump_json().encode(),
                    timestamp_ms=0,
                )
            )
        assert sink.flush() == []

    try:
        flush("normalised", [product(pid, 1000) for pid in pids])
        assert (counting.read, counting.written) == (len(pids), len(pids))  # tombstones only
        flush("predictions", [prediction(pid, 1000) for pid in pids])
        assert (counting.read, counting.written) == (len(pids), 2 * len(pids))  # no read
        flush("predictions", [prediction(pid, 999) for pid in pids])  # stale: still no read
        assert counting.read == len(pids)
    finally:
        sink.close()
    docs = documents(elasticsearch_client(sink_settings), sink_settings.elasticsearch_index)
    assert set(docs) == set(pids)
    assert all(d["prediction"]["model_version"] == "v1000" for d in docs.values())
    assert all(d["title"].endswith("v1000") for d in docs.values())
