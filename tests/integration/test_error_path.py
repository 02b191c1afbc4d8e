"""The messages that crashed the normalise agent, and oversized dead letters, through
the real broker: each is dead-lettered (or repaired) once, the worker stays up, and the
agent's committed offsets reach the end of every partition; replay leaves what it skips."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from schemas.events import DeadLetter
from streams.deadletter_cli import replay_dead_letters
from streams.topics import create_topics
from tests.integration.running_worker import WorkerProcess, read_topic, wait_until

BIG = 900_000  # base64 of this is 1.2 MB, over the broker's 1 MB message size


@pytest.fixture
def worker(topic_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    create_topics(topic_settings)
    process = WorkerProcess(topic_settings, tmp_path / "worker.log", "--agents", "normalise")
    process.start()
    yield process
    assert process.alive(), "the worker crashed:\n" + process.log_tail()
    process.stop()


def _publish(settings: Settings, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer(librdkafka_config(settings, **{"message.max.bytes": 2_000_000}))
    for key, value in messages:
        producer.produce(settings.topic("raw"), key=key, value=value)
    assert producer.flush(30) == 0


def _lagging(settings: Settings) -> list[str]:
    """'partition committed/end' for each products.raw partition the agent has not finished."""
    topic = settings.topic("raw")
    probe = Consumer(librdkafka_config(settings, **{"group.id": settings.app_id}))
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        ends = {tp.partition: probe.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        committed = probe.committed(parts, timeout=10)
    finally:
        probe.close()
    return [
        f"{tp.partition} {tp.offset}/{ends[tp.partition]}"
        for tp in committed
        if ends[tp.partition] > 0 and tp.offset != ends[tp.partition]
    ]


def _product(product_id: str, title: str) -> bytes:
    return json.dumps({"product_id": product_id, "title": title}).encode()


def test_the_messages_that_froze_partitions_are_dead_lettered_and_offsets_reach_the_end(
    topic_settings: Settings, worker: WorkerProcess
) -> None:
    big = b'{"product_id": "big", "title": "' + b"x" * BIG  # not JSON: no closing quote
    hostile = {
        "deep": b"[" * 5000,
        "digits": b'{"product_id": "digits", "price": ' + b"9" * 5000 + b"}",
        "big": big,
    }
    messages: list[tuple[bytes | None, bytes | None]] = []
    for key, value in hostile.items():
        messages += [(key.encode(), value), (key.encode(), _product(key, f"{key} after"))]
    messages.append((b"surrogate", b'{"product_id": "surrogate", "title": "Hat \\ud800"}'))
    _publish(topic_settings, messages)

    wait_until(lambda: not _lagging(topic_settings), 180, "the agent to commit every offset")
    letters = [
        DeadLetter.model_validate(r.value) for r in read_topic(topic_settings, "deadletter", 2)
    ]
    by_key = {base64.b64decode(d.key_b64 or "").decode(): d for d in letters}
    assert sorted(by_key) == ["big", "deep", "digits"]
    assert len(letters) == 3  # each exactly once
    assert by_key["deep"].error_class == "TooDeeplyNested"
    assert by_key["digits"].error_class == "NumberTooLarge"
    cut = by_key["big"]
    assert cut.original_truncated
    assert cut.original_length == len(big)
    assert cut.original_sha256 == hashlib.sha256(big).hexdigest()
    assert base64.b64decode(cut.original_b64) == big[: topic_settings.deadletter_original_max_bytes]

    normalised = {r.key: r.value for r in read_topic(topic_settings, "normalised", 2)}
    assert normalised["surrogate"]["title"] == "Hat \ufffd"
    for key in hostile:  # the valid update behind each bad message went through
        assert normalised[key]["title"] == f"{key} after"


def test_replay_with_a_reason_leaves_the_other_letters_for_a_later_run(
    topic_settings: Settings,
) -> None:
    settings = topic_settings
    create_topics(settings)
    producer = Producer(librdkafka_config(settings))
    # One partition, so the letter --reason skips sits between letters it replays.
    for key, error_class in (
        (b"j1", "InvalidJson"),
        (b"km", "KeyMismatch"),
        (b"j2", "InvalidJson"),
    ):
        letter = DeadLetter(
            original_b64=base64.b64encode(json.dumps({"was": key.decode()}).encode()).decode(),
            key_b64=base64.b64encode(key).decode(),
            source_topic=settings.topic("raw"),
            partition=0,
            offset=0,
            stage="normalise",
            error_class=error_class,
            reason="fix the feed",
        )
        producer.produce(
            settings.topic("deadletter"), key=key, value=letter.model_dump_json(), partition=0
        )
    assert producer.flush(30) == 0
    labels = settings.topic("labels")  # any topic of the test's own: replay sends there

    assert replay_dead_letters(settings, reason="InvalidJson", to=labels) == 2
    # Before: that run committed past the KeyMismatch letter, so no later run saw it.
    assert replay_dead_letters(settings, reason="KeyMismatch", to=labels) == 1
    # Committed only up to the first letter left out: j2, after km, is read again
    # (replaying it twice is harmless: the stages are idempotent per product version).
    assert replay_dead_letters(settings, to=labels) == 1
    assert replay_dead_letters(settings, to=labels) == 0
    replayed = [r.key for r in read_topic(settings, "labels", 2)]
    assert sorted(k or "" for k in replayed) == ["j1", "j2", "j2", "km"]
