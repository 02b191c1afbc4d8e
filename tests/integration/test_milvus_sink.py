"""The Milvus sink against real Kafka and a real Milvus (milvus-lite server).

Embedding events and tombstones are produced to a unique topic; the sink runner
consumes them in a thread; the tests then read Milvus back.
"""

from __future__ import annotations

import gc
import json
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from catstream.kafka_config import librdkafka_config
from catstream.metrics import REGISTRY
from catstream.settings import Settings
from streams.topics import create_topics
from tests.integration.running_worker import WorkerProcess, dead_letters
from workers.milvus_collection import (
    IMAGE_DIM,
    TEXT_DIM,
    CollectionMismatch,
    CollectionSpec,
    build_schema,
    connect,
    count_rows,
    ensure_collection,
)
from workers.milvus_filters import binds_templates
from workers.milvus_sink import build_milvus_sink_runner, run_milvus_sink
from workers.sink_runner import SinkRunner

WAIT_S = 60.0


# ----------------------------------------------------------------------- helpers


def embedding_event(product_id: str, rng: random.Random, version: str = "v1") -> dict[str, Any]:
    top = rng.choice([101, 102, 103])
    return {
        "product_id": product_id,
        "model_version": version,
        "text_embedding": [rng.uniform(-1, 1) for _ in range(TEXT_DIM)],
        "image_embedding": (
            [rng.uniform(0, 1) for _ in range(IMAGE_DIM)] if rng.random() < 0.5 else None
        ),
        "category_ids": [top, top * 10 + rng.randint(1, 3)],
        "category_path": [f"Top {top}", f"Sub {top}"],
        "fingerprint": uuid.uuid4().hex,
        "updated_at": int(time.time() * 1000),
    }


def produce(settings: Settings, records: list[tuple[str, dict[str, Any] | None]]) -> None:
    """Publish (key, event) pairs in order; None is a tombstone."""
    producer = Producer(librdkafka_config(settings, **{"linger.ms": 5}))
    topic = settings.topic("embeddings")
    for key, value in records:
        body = json.dumps(value).encode() if value is not None else None
        producer.produce(topic, key=key.encode(), value=body)
    assert producer.flush(30) == 0, "producer could not deliver every record to Kafka"


def consumed_everything(settings: Settings) -> bool:
    """True when the sink's group has committed up to the end of every partition."""
    topic = settings.topic("embeddings")
    probe = Consumer(librdkafka_config(settings, **{"group.id": f"{settings.app_id}-milvus-sink"}))
    try:
        partitions = probe.list_topics(topic, timeout=10).topics[topic].partitions
        committed = probe.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        for tp in committed:
            _, high = probe.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        probe.close()


def sink_writes(op: str) -> float:
    labels = {"sink": "milvus", "op": op}
    return REGISTRY.get_sample_value("catstream_sink_writes_total", labels) or 0.0


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _run_collecting_errors(runner: SinkRunner, errors: list[BaseException]) -> None:
    try:
        runner.run()
    except BaseException as exc:  # a thread cannot raise to the test; it asserts on errors
        errors.append(exc)


class RunningSink:
    """The worker's Milvus sink runner in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.runner: SinkRunner = build_milvus_sink_runner(settings, batch_size=50)
        self.errors: list[BaseException] = []
        # No reference back to self from the thread: no cycle keeping the runner's
        # Kafka clients alive (and reconnecting) after the test.
        self.thread = threading.Thread(
            target=_run_collecting_errors,
            args=(self.runner, self.errors),
            name="milvus-sink-test",
            daemon=True,
        )

    def __enter__(self) -> RunningSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "sink runner did not stop within 30 s"
        # Tracebacks of retried Milvus errors form cycles that keep the runner (and its
        # Kafka producer, reconnecting after the stack stops) alive until a collection.
        del self.runner
        gc.collect()


@pytest.fixture
def sink_settings(topic_settings: Settings) -> Settings:
    """This test's topics (and, through its unique app id, its own consumer group)."""
    create_topics(topic_settings)
    return topic_settings


# ------------------------------------------------------------------------- tests


def test_upserts_and_deletes_reach_milvus_and_replays_add_no_duplicates(
    sink_settings: Settings,
) -> None:
    rng = random.Random(5)
    events = {f"p{i:03d}": embedding_event(f"p{i:03d}", rng) for i in range(120)}
    records: list[tuple[str, dict[str, Any] | None]] = list(events.items())
    deleted = [f"p{i:03d}" for i in range(0, 120, 10)]  # 12 deletes
    records += [(pid, None) for pid in deleted]
    # Deleted then re-created: must exist at the end.
    recreated = ["p005", "p015"]
    for pid in recreated:
        records += [(pid, None), (pid, embedding_event(pid, rng, version="v3"))]
    # Updated twice: the last version must win.
    records += [("p001", embedding_event("p001", rng, version="v2"))]
    records += [("p001", embedding_event("p001", rng, version="v3"))]
    # Created then deleted before any flush: must not exist.
    records += [("gone", embedding_event("gone", rng)), ("gone", None)]
    # Unwritable: wrong dimension → dead letter, not a stuck sink.
    bad = embedding_event("bad", rng)
    bad["text_embedding"] = bad["text_embedding"][:10]
    records += [("bad", bad)]
    produce(sink_settings, records)

    expected = 120 - len(deleted)
    upserts_before = sink_writes("upsert")
    client = connect(sink_settings)
    name = sink_settings.milvus_collection
    with RunningSink(sink_settings) as sink:
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume every record")
        assert count_rows(client, name) == expected
        # Replaying the same records (a crash before commit) must not duplicate rows.
        produce(sink_settings, records)
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume the replay")
        assert count_rows(client, name) == expected
    assert not sink.errors
    # At least every live product once per publish (more if a batch boundary split updates).
    assert sink_writes("upsert") - upserts_before >= 2 * expected

    rows = {r["product_id"]: r for r in client.query(name, filter="", output_fields=["*"])}
    assert len(rows) == expected
    assert not (set(deleted) - set(recreated)) & set(rows)
    assert all(rows[pid]["model_version"] == "v3" for pid in [*recreated, "p001"])
    assert "gone" not in rows
    assert "bad" not in rows
    sample = rows["p002"]
    assert sample["cat_l1"] == events["p002"]["category_ids"][0]
    assert sample["cat_l3"] == 0
    assert sample["has_image"] is (events["p002"]["image_embedding"] is not None)

    letters = dead_letters(sink_settings, expected=2)  # the bad record, once per publish
    assert len(letters) == 2
    assert all("384" in letter["reason"] and "republish" in letter["reason"] for letter in letters)


def test_run_milvus_sink_consumes_until_its_stop_event_is_set(sink_settings: Settings) -> None:
    rng = random.Random(3)
    produce(sink_settings, [(f"s{i}", embedding_event(f"s{i}", rng)) for i in range(5)])
    stop = threading.Event()
    worker = threading.Thread(target=run_milvus_sink, args=(sink_settings, stop), daemon=True)
    worker.start()
    wait_for(lambda: consumed_everything(sink_settings), "run_milvus_sink to consume")
    stop.set()
    worker.join(30)
    assert not worker.is_alive(), "run_milvus_sink ignored its stop event"
    assert count_rows(connect(sink_settings), sink_settings.milvus_collection) == 5


def test_catstream_sink_milvus_runs_the_sink_as_its_own_process(
    sink_settings: Settings, tmp_path: Path
) -> None:
    """``catstream sink milvus``: consumes, writes, and exits 0 on SIGTERM."""
    rng = random.Random(4)
    produce(sink_settings, [(f"q{i}", embedding_event(f"q{i}", rng)) for i in range(5)])
    sink = WorkerProcess(sink_settings, tmp_path / "sink.log", "milvus", command="sink").start()
    try:
        wait_for(lambda: consumed_everything(sink_settings), "catstream sink milvus to consume")
    finally:
        code = sink.stop()
    assert code == 0, sink.log_tail()
    assert count_rows(connect(sink_settings), sink_settings.milvus_collection) == 5


# ---------------------------------------------------------- a Milvus of its own


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MilvusLiteServer:
    """A milvus-lite gRPC server this test owns, so it can stop and restart it."""

    def __init__(self, data_dir: Path, *, plain: bool = False) -> None:
        self.data_dir = data_dir
        self.plain = plain  # milvus-lite's own `milvus-lite server`, without filter templates
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # The stack's milvus-lite server: it binds filter templates, as real Milvus does.
        server = [sys.executable, "-m", "deploy.services.milvus_lite_server"]
        if self.plain:
            server = [str(Path(sys.executable).parent / "milvus-lite"), "server"]
        address = ["--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*server, "--data-dir", str(self.data_dir), *address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._accepts, f"milvus-lite on port {self.port}", timeout_s=30)

    def _accepts(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(15)
            self.process = None


def milvus_retries() -> float:
    return REGISTRY.get_sample_value("catstream_sink_retries_total", {"sink": "milvus"}) or 0.0


@pytest.fixture
def own_milvus(tmp_path: Path) -> Iterator[MilvusLiteServer]:
    server = MilvusLiteServer(tmp_path / "milvus")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_dead_milvus_delays_the_sink_but_loses_nothing(
    sink_settings: Settings, own_milvus: MilvusLiteServer
) -> None:
    settings = sink_settings.model_copy(update={"milvus_uri": own_milvus.uri})
    rng = random.Random(7)
    first = [(f"a{i}", embedding_event(f"a{i}", rng)) for i in range(40)]
    second = [(f"b{i}", embedding_event(f"b{i}", rng)) for i in range(40)]
    with RunningSink(settings) as sink:
        produce(settings, list(first))
        wait_for(lambda: consumed_everything(settings), "the first batch")
        retries_before = milvus_retries()

        own_milvus.stop()
        produce(settings, list(second))
        # Several failed attempts, however long each takes: nothing may be committed meanwhile.
        wait_for(lambda: milvus_retries() >= retries_before + 3, "the sink to retry three times")
        assert not consumed_everything(settings), "offsets were committed while Milvus was down"

        own_milvus.start()
        wait_for(lambda: consumed_everything(settings), "the sink to catch up after restart")
    assert not sink.errors
    assert count_rows(connect(settings), settings.milvus_collection) == 80


def test_collection_creation_is_idempotent_under_a_race(topic_settings: Settings) -> None:
    spec = CollectionSpec.from_settings(topic_settings)
    errors: list[BaseException] = []

    def create() -> None:
        try:
            ensure_collection(connect(topic_settings), spec)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    client = connect(topic_settings)
    ensure_collection(client, spec)  # and once more when it surely exists
    assert count_rows(client, spec.name) == 0
    indexes = {
        name: client.describe_index(spec.name, name) for name in client.list_indexes(spec.name)
    }
    assert {i["metric_type"] for i in indexes.values()} == {"COSINE"}
    assert set(indexes) == {"text_vector", "image_vector"}


def test_a_collection_left_without_indexes_gets_them(topic_settings: Settings) -> None:
    spec = CollectionSpec.from_settings(topic_settings)
    client = connect(topic_settings)
    # What a creator that failed between pymilvus's two calls leaves behind.
    client.create_collection(spec.name, schema=build_schema(spec), consistency_level="Strong")
    assert client.list_indexes(spec.name) == []
    ensure_collection(client, spec)
    assert set(client.list_indexes(spec.name)) == {"text_vector", "image_vector"}
    assert count_rows(client, spec.name) == 0


def test_a_collection_with_other_dimensions_is_refused_with_what_to_do(
    topic_settings: Settings,
) -> None:
    client = connect(topic_settings)
    ensure_collection(client, CollectionSpec(name=topic_settings.milvus_collection, text_dim=8))
    with pytest.raises(CollectionMismatch, match=r"text_vector has dim 8, expected 384.*drop it"):
        ensure_collection(client, CollectionSpec.from_settings(topic_settings))


@pytest.mark.parametrize("index_type", ["IVF_FLAT", "HNSW"])
def test_approximate_index_types_are_created(topic_settings: Settings, index_type: str) -> None:
    settings = topic_settings.model_copy(update={"milvus_index_type": index_type})
    client = connect(settings)
    ensure_collection(client, CollectionSpec.from_settings(settings))
    index = client.describe_index(settings.milvus_collection, "text_vector")
    assert index["index_type"] == index_type


# Ids that are expression syntax in Milvus filters: each must stay one product's id.
HOSTILE_IDS = [
    "x'] or product_id not in ['",
    'x"] or product_id not in ["',
    "' or product_id != '",
    "back\\slash\\",
    "\\'",
    '\\"',
    "[[brackets]]",
    "{ids}",
    "line\nbreak\ttab",
    "ünï©ødé ☃ 商品",
]


def test_ids_with_expression_syntax_touch_only_their_own_product(sink_settings: Settings) -> None:
    """A tombstone keyed ``x'] or product_id not in ['`` once deleted every row."""
    rng = random.Random(8)
    plain = [f"p{i:03d}" for i in range(30)]
    everyone = [*plain, *HOSTILE_IDS]
    events = {pid: embedding_event(pid, rng) for pid in everyone}
    client = connect(sink_settings)
    name = sink_settings.milvus_collection
    with RunningSink(sink_settings) as sink:
        produce(sink_settings, list(events.items()))
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume every upsert")
        rows = client.query(name, filter="", output_fields=["product_id"])
        assert sorted(r["product_id"] for r in rows) == sorted(everyone)

        # Deletes of ids that exist nowhere, shaped to match everything: nothing goes.
        produce(sink_settings, [("x'] or product_id not in ['", None)])
        produce(sink_settings, [(pid + "-absent", None) for pid in HOSTILE_IDS])
        wait_for(lambda: consumed_everything(sink_settings), "the sink to consume the deletes")
        survivors = {r["product_id"] for r in client.query(name, filter="", output_fields=["*"])}
        assert survivors == set(everyone) - {"x'] or product_id not in ['"}

        # Each remaining hostile id deletes exactly itself.
        for pid in HOSTILE_IDS[1:]:
            produce(sink_settings, [(pid, None)])
            wait_for(lambda: consumed_everything(sink_settings), f"the delete of {pid!r}")
            survivors.discard(pid)
            assert count_rows(client, name) == len(survivors), f"deleting {pid!r}"
        left = {r["product_id"] for r in client.query(name, filter="", output_fields=["*"])}
        assert left == set(plain)
    assert not sink.errors


def test_an_older_embedding_never_replaces_a_newer_row(sink_settings: Settings) -> None:
    rng = random.Random(9)
    newer = {**embedding_event("p1", rng, version="newer"), "updated_at": 2_000_000}
    older = {**embedding_event("p1", rng, version="older"), "updated_at": 1_000_000}
    same_batch_newer = {**embedding_event("p2", rng, version="newer"), "updated_at": 2_000_000}
    same_batch_older = {**embedding_event("p2", rng, version="older"), "updated_at": 1_000_000}
    replay = {**embedding_event("p3", rng, version="first"), "updated_at": 1_000_000}
    client = connect(sink_settings)
    name = sink_settings.milvus_collection

    def stored() -> dict[str, dict[str, Any]]:
        return {r["product_id"]: r for r in client.query(name, filter="", output_fields=["*"])}

    with RunningSink(sink_settings) as sink:
        produce(sink_settings, [("p1", newer), ("p3", replay)])
        wait_for(lambda: consumed_everything(sink_settings), "the newer embedding")
        produce(sink_settings, [("p1", older), ("p2", same_batch_newer), ("p2", same_batch_older)])
        produce(sink_settings, [("p3", {**replay, "model_version": "same version again"})])
        wait_for(lambda: consumed_everything(sink_settings), "the older embedding")
        rows = stored()
    assert not sink.errors
    assert (rows["p1"]["model_version"], rows["p1"]["updated_at"]) == ("newer", 2_000_000)
    assert (rows["p2"]["model_version"], rows["p2"]["updated_at"]) == ("newer", 2_000_000)
    # An equal version is applied (a replay, or a re-embedding by a new model).
    assert rows["p3"]["model_version"] == "same version again"


def test_a_milvus_without_filter_templates_gets_escaped_literals_with_the_same_effect(
    sink_settings: Settings, tmp_path: Path
) -> None:
    """Plain ``milvus-lite server`` (like Milvus before 2.5) ignores filter_params: the
    sink renders the same filters with escaped literals, and ids stay data."""
    plain = MilvusLiteServer(tmp_path / "plain", plain=True)
    plain.start()
    try:
        settings = sink_settings.model_copy(update={"milvus_uri": plain.uri})
        client = connect(settings)
        ensure_collection(client, CollectionSpec.from_settings(settings))
        assert not binds_templates(client, settings.milvus_collection)
        stack_client = connect(sink_settings)  # the stack's server binds them
        ensure_collection(stack_client, CollectionSpec.from_settings(sink_settings))
        assert binds_templates(stack_client, sink_settings.milvus_collection)
        rng = random.Random(10)
        plain_ids = [f"p{i}" for i in range(10)]
        events = {pid: embedding_event(pid, rng) for pid in [*plain_ids, *HOSTILE_IDS]}
        older = {**events["p0"], "model_version": "older", "updated_at": 1}
        with RunningSink(settings) as sink:
            produce(settings, list(events.items()))
            wait_for(lambda: consumed_everything(settings), "the upserts")
            produce(settings, [("p0", older), ("x'] or product_id not in ['-absent", None)])
            produce(settings, [(pid, None) for pid in HOSTILE_IDS])
            wait_for(lambda: consumed_everything(settings), "the deletes")
        assert not sink.errors
        rows = client.query(settings.milvus_collection, filter="", output_fields=["*"])
        assert {r["product_id"] for r in rows} == set(plain_ids)
        assert next(r for r in rows if r["product_id"] == "p0")["model_version"] == "v1"
    finally:
        plain.stop()
