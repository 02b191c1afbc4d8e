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

from confluent_kafka import Consumer, KafkaError, Producer

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings


@dataclass(frozen=True)
class Record:
    key: str | None
    value: Any
    partition: int
    offset: int


def read_topic(settings: Settings, key: str, idle_s: float = 3.0) -> list[Record]:
    """Every record of a product topic, from the beginning, decoded from JSON."""
    consumer = Consumer(
        librdkafka_config(
            settings,
            **{
                "group.id": f"reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([settings.topic(key)])
    records: list[Record] = []
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < idle_s:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                continue
            idle_since = time.monotonic()
            raw, message_key = message.value(), message.key()
            records.append(
                Record(
                    key=message_key.decode() if message_key is not None else None,
                    value=json.loads(raw) if raw is not None else None,
                    partition=message.partition() or 0,
                    offset=message.offset() or 0,
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
