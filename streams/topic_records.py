"""Reading a product topic from the beginning, and publishing JSON to it.

For people and tools rather than stream processing: the demo's summary, the
benchmarks and the end-to-end tests read whole topics with these; the workers
use their own consumers with committed offsets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings


@dataclass(frozen=True)
class Record:
    key: str | None
    value: Any
    partition: int
    offset: int


def read_topic(
    settings: Settings, key: str, idle_s: float = 3.0, timeout_s: float = 120.0
) -> list[Record]:
    """Every record of a product topic, from the beginning, decoded from JSON.

    Reads at least up to each partition's end offset as of the call (however long
    the broker takes to deliver it, up to ``timeout_s``), then goes on until no
    record arrives for ``idle_s``. Never "idle, so surely done": on a busy machine
    the first fetch alone can take longer than any idle time.
    """
    topic = settings.topic(key)
    consumer = Consumer(
        librdkafka_config(
            settings,
            **{
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    records: list[Record] = []
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        behind = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        idle_since = time.monotonic()
        while behind or time.monotonic() - idle_since < idle_s:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{topic}: partitions {sorted(behind)} not read to their end offsets "
                    f"{ {p: ends[p] for p in sorted(behind)} } within {timeout_s:.0f} s"
                )
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                if (message.offset() or 0) >= ends.get(message.partition() or 0, 0):
                    behind.discard(message.partition() or 0)
                continue
            idle_since = time.monotonic()
            raw, message_key = message.value(), message.key()
            partition, offset = message.partition() or 0, message.offset() or 0
            if offset + 1 >= ends.get(partition, 0):
                behind.discard(partition)
            records.append(
                Record(
                    key=message_key.decode() if message_key is not None else None,
                    value=json.loads(raw) if raw is not None else None,
                    partition=partition,
                    offset=offset,
                )
            )
    finally:
        consumer.close()
    return records


def latest_by_key(records: list[Record]) -> dict[str, Any]:
    """Each key's last value (``None`` for a tombstone): a key's records are in offset order."""
    latest: dict[str, Any] = {}
    for record in records:
        if record.key is not None:
            latest[record.key] = record.value
    return latest


def publish_json(
    settings: Settings, events: Iterable[tuple[str, dict[str, Any] | None]], topic_key: str = "raw"
) -> None:
    """Publish ``(key, value)`` pairs as JSON (``None`` is a tombstone) and wait for acks."""
    producer = Producer(librdkafka_config(settings))
    for key, value in events:
        payload = json.dumps(value).encode() if value is not None else None
        producer.produce(settings.topic(topic_key), key=key.encode(), value=payload)
    producer.flush(30)
