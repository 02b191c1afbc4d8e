"""Reading back what the pipeline did, for the hostile-input, chaos and soak tests.

Topics are read as raw bytes up to their high watermarks (no idle timeouts),
consumer groups' committed offsets are compared with those watermarks, and the
stores are read whole: Milvus through a query iterator, Elasticsearch by scan.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from elasticsearch import helpers

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from training.generated import train_on_generated
from workers.elasticsearch_index import elasticsearch_client
from workers.milvus_collection import connect

# Records of products.raw may be up to ~1 MB; the dead letters of those are bigger.
BIG_MESSAGE_BYTES = 4_000_000


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def producer(settings: Settings, **extra: Any) -> Producer:
    return Producer(
        librdkafka_config(
            settings, **{"linger.ms": 20, "message.max.bytes": BIG_MESSAGE_BYTES, **extra}
        )
    )


def produce_all(
    settings: Settings,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    topic_key: str = "raw",
) -> list[tuple[int, int]]:
    """Publish (key, value) pairs; returns each one's (partition, offset), in order."""
    out = producer(settings)
    where: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def delivered(index: int) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(f"message {index}: {err}")
            else:
                where[index] = (msg.partition(), msg.offset())

        return report

    count = 0
    for index, (key, value) in enumerate(messages):
        while True:
            try:
                out.produce(
                    settings.topic(topic_key), key=key, value=value, on_delivery=delivered(index)
                )
                break
            except BufferError:
                out.poll(0.5)
        out.poll(0)
        count += 1
    remaining = out.flush(120)
    assert remaining == 0, f"{remaining} messages were not acknowledged by Kafka in 120 s"
    assert not errors, f"Kafka refused {len(errors)} messages: {errors[:5]}"
    return [where[i] for i in range(count)]


def produce_with_kcat(
    settings: Settings, messages: Sequence[tuple[bytes, bytes]], workdir: Path
) -> None:
    """Publish (key, value) pairs with Debian's kcat, one file per message (kcat -P FILE).

    kcat must be installed (``apt-get install kcat``): the test fails otherwise.
    """
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is not installed: apt-get install -y kcat (the hostile suite needs it)"
    workdir.mkdir(parents=True, exist_ok=True)
    for index, (key, value) in enumerate(messages):
        body = workdir / f"message-{index}.bin"
        body.write_bytes(value)
        done = subprocess.run(
            [
                kcat,
                "-P",
                "-b",
                settings.kafka_bootstrap,
                "-t",
                settings.topic("raw"),
                "-k",
                key.decode(),
                "-X",
                f"message.max.bytes={BIG_MESSAGE_BYTES}",
                str(body),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"kcat failed: {done.stderr[-2000:]}"


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        librdkafka_config(
            settings,
            **{
                "group.id": f"checker-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.message.max.bytes": BIG_MESSAGE_BYTES,
            },
        )
    )


def high_watermarks(settings: Settings, topic: str) -> dict[int, int]:
    probe = _consumer(settings)
    try:
        partitions = probe.list_topics(topic, timeout=30).topics[topic].partitions
        return {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions
        }
    finally:
        probe.close()


def read_all(settings: Settings, topic_key: str, timeout_s: float = 120.0) -> list[RawRecord]:
    """Every record of a topic from the beginning up to the current high watermarks."""
    topic = settings.topic(topic_key)
    ends = high_watermarks(settings, topic)
    consumer = _consumer(settings)
    pending = {p for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, 0) for p in pending])
    records: list[RawRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while pending:
            assert time.monotonic() < deadline, f"reading {topic} took over {timeout_s:.0f}s"
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset < ends[partition]:
                records.append(RawRecord(topic, partition, offset, message.key(), message.value()))
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
    finally:
        consumer.close()
    return records


def json_values(records: Iterable[RawRecord]) -> list[tuple[RawRecord, Any]]:
    return [(r, json.loads(r.value) if r.value is not None else None) for r in records]


def latest_json_by_key(settings: Settings, topic_key: str) -> dict[str, Any]:
    """Each key's last value (None for a tombstone), in offset order per partition."""
    latest: dict[str, Any] = {}
    for record, value in json_values(read_all(settings, topic_key)):
        if record.key is not None:
            latest[record.key.decode("utf-8", "replace")] = value
    return latest


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    """Every consumer group of a ``--sinks`` worker and the topics it consumes."""
    return {
        settings.app_id: [settings.topic("raw"), settings.topic("normalised")],
        f"{settings.app_id}-milvus-sink": [settings.topic("embeddings")],
        f"{settings.app_id}-elasticsearch-sink": [
            settings.topic("normalised"),
            settings.topic("predictions"),
        ],
    }


def lagging_partitions(settings: Settings) -> list[str]:
    """'group topic[partition] committed/end' for each partition not consumed to its end."""
    lagging: list[str] = []
    for group, topics in consumer_groups(settings).items():
        probe = Consumer(librdkafka_config(settings, **{"group.id": group}))
        try:
            for topic in topics:
                ends = high_watermarks(settings, topic)
                committed = probe.committed([TopicPartition(topic, p) for p in ends], timeout=30)
                for tp in committed:
                    end = ends[tp.partition]
                    if end > 0 and tp.offset != end:
                        lagging.append(f"{group} {topic}[{tp.partition}] {tp.offset}/{end}")
        finally:
            probe.close()
    return lagging


def total_lag(settings: Settings) -> int:
    """Records not yet committed, summed over every consumer group and partition."""
    lag = 0
    for group, topics in consumer_groups(settings).items():
        probe = Consumer(librdkafka_config(settings, **{"group.id": group}))
        try:
            for topic in topics:
                ends = high_watermarks(settings, topic)
                committed = probe.committed([TopicPartition(topic, p) for p in ends], timeout=30)
                # A partition without a commit (offset < 0) lags by all of it.
                lag += sum(ends[tp.partition] - max(tp.offset, 0) for tp in committed)
        finally:
            probe.close()
    return lag


def milvus_rows(
    settings: Settings, fields: Sequence[str] = ("updated_at",)
) -> dict[str, dict[str, Any]]:
    """Every row of the test's collection by product id (duplicates are an error).

    Read in ``updated_at`` ranges of at most ``_PAGE`` rows: numeric filters only, since
    pymilvus' query_iterator pages with an unescaped ``product_id > "<last id>"`` and
    breaks on ids with quotes (the hostile suite has some).
    """
    client = connect(settings)
    name = settings.milvus_collection
    try:
        if not client.has_collection(name):
            return {}
        client.load_collection(name)  # a restarted Milvus has it released
        found: list[dict[str, Any]] = []
        pending = [(-(2**63), 2**63 - 1)]
        while pending:
            low, high = pending.pop()
            where = f"updated_at >= {low} and updated_at <= {high}"
            count = int(
                client.query(name, filter=where, output_fields=["count(*)"],
                             consistency_level="Strong")[0]["count(*)"]
            )  # fmt: skip
            if count > _PAGE and low < high:
                middle = low + (high - low) // 2
                pending += [(low, middle), (middle + 1, high)]
            elif count:
                found += client.query(
                    name, filter=where, output_fields=["product_id", *fields], limit=count,
                    consistency_level="Strong",
                )  # fmt: skip
    finally:
        client.close()
    rows: dict[str, dict[str, Any]] = {}
    duplicates = []
    for row in found:
        if row["product_id"] in rows:
            duplicates.append(row["product_id"])
        rows[row["product_id"]] = row
    assert not duplicates, f"Milvus holds {len(duplicates)} duplicate rows: {duplicates[:5]}"
    return rows


_PAGE = 10_000


def elasticsearch_docs(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every document of the test's index by id."""
    client = elasticsearch_client(settings, timeout_s=60)
    index = settings.elasticsearch_index
    if not client.indices.exists(index=index):
        return {}
    client.indices.refresh(index=index)
    docs: dict[str, dict[str, Any]] = {}
    for hit in helpers.scan(client, index=index, query={"query": {"match_all": {}}}, size=1000):
        assert hit["_id"] not in docs, f"Elasticsearch returned {hit['_id']!r} twice"
        docs[hit["_id"]] = hit["_source"]
    return docs


def wait_for(check: Callable[[], bool], timeout_s: float, every_s: float = 3.0) -> bool:
    """Poll ``check`` until it holds or ``timeout_s`` passes; returns whether it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)


# Lines a crashed or restarted agent or sink thread leaves in the worker's log.
CRASH_MARKERS = (
    "Restarting dead",
    "Giving up on crashed",
    "Exception in thread",
    "RecursionError",
    "crashed",
)


def crash_lines(log_path: Path, limit: int = 10) -> list[str]:
    if not log_path.exists():
        return []
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if any(marker in line for marker in CRASH_MARKERS):
            found.append(line[:400])
            if len(found) >= limit:
                break
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def categoriser_loaded(settings: Settings) -> bool:
    """True when Triton serves a version of the categoriser (any test may have trained it)."""
    url = f"{settings.triton_http_url.rstrip('/')}/v2/models/{settings.categoriser_model}/ready"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def ensure_categoriser(settings: Settings, workdir: Path) -> None:
    """Train (through ``catstream train``) and load a categoriser unless one is loaded."""
    if not categoriser_loaded(settings):
        train_on_generated(settings, workdir, 800, epochs=8)
    assert categoriser_loaded(settings), "the categoriser is not ready in Triton after training"
