"""Publishing generated feeds to the real local Kafka, and reading every event back.

Checks the publisher's accounting (published + skipped = rows, nothing failed),
that unparsable rows are skipped with the generator's line numbers, that
events are keyed by product id, that parsed-but-invalid rows and (for JSON lines)
raw garbage are still published for the stream to dead-letter, and that a
publish to a missing topic fails with a message saying what to do.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from feeds.generator import GenerateOptions, GenerateReport, generate_feed
from feeds.publisher import PublishError, publish_feed
from streams.topics import create_topics

ROWS = 2000


def _generate(
    tmp_path: Path, settings: Settings, network: str, fmt: str
) -> tuple[Path, GenerateReport]:
    options = GenerateOptions(
        products=ROWS,
        network=network,
        seed=11,
        fmt=fmt,
        corrupt_fraction=0.05,
        taxonomy_path=settings.taxonomy_path,
    )
    out = io.BytesIO()
    report = generate_feed(options, out)
    path = tmp_path / f"feed.{report.fmt}"
    path.write_bytes(out.getvalue())
    return path, report


def _consume_all(settings: Settings, expected: int, timeout_s: float = 60.0) -> list[Message]:
    consumer = Consumer(
        librdkafka_config(
            settings,
            **{
                "group.id": f"{settings.topic_prefix}check",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([settings.topic("raw")])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=1.0):
                assert message.error() is None, message.error()
                messages.append(message)
        # Anything beyond `expected` would be a duplicate: give it a moment to show up.
        messages.extend(m for m in consumer.consume(num_messages=500, timeout=2.0))
    finally:
        consumer.close()
    return messages


def _line(message: Message) -> int:
    """The feed line a message came from (the publisher's ``catstream-line`` header)."""
    for name, value in dict(message.headers() or {}).items():
        if name == "catstream-line" and isinstance(value, bytes):
            return int(value)
    raise AssertionError("every published message carries its feed line")


def _event(message: Message) -> dict[str, Any]:
    value = message.value()
    assert value is not None
    event: dict[str, Any] = json.loads(value)
    return event


def test_csv_feed_every_row_published_or_skipped(topic_settings: Settings, tmp_path: Path) -> None:
    create_topics(topic_settings)
    path, generated = _generate(tmp_path, topic_settings, "awin", "csv")

    report = publish_feed(path, "awin", topic_settings, progress=False)

    assert (report.rows, report.failed) == (ROWS, 0)
    assert report.sent + report.skipped == ROWS
    assert report.skipped == generated.parse_failing > 0
    assert [e.line for e in report.skipped_rows] == generated.parse_error_lines
    assert all(e.reason for e in report.skipped_rows)

    messages = _consume_all(topic_settings, report.sent)
    assert len(messages) == report.sent  # no more, no fewer: the producer is idempotent
    lines = {_line(m) for m in messages}
    assert not lines & set(generated.parse_error_lines)
    keyless = 0
    for message in messages:
        event = _event(message)
        product_id = event.get("product_id")
        if product_id:
            assert message.key() == product_id.encode()
        else:
            assert message.key() is None
            keyless += 1
    assert keyless == generated.corrupt["missing_id"]  # published: the stream dead-letters it
    oversize = sum(len(_event(m).get("product_id", "")) > 256 for m in messages)
    assert oversize == generated.corrupt["oversize_id"]


def test_jsonl_garbage_lines_are_forwarded_raw(topic_settings: Settings, tmp_path: Path) -> None:
    create_topics(topic_settings)
    path, generated = _generate(tmp_path, topic_settings, "generic", "jsonl")

    report = publish_feed(path, "generic", topic_settings, progress=False)

    assert (report.rows, report.sent, report.failed, report.skipped) == (ROWS, ROWS, 0, 0)
    assert report.raw_forwarded == len(generated.parse_error_lines) > 0
    messages = _consume_all(topic_settings, ROWS)
    assert len(messages) == ROWS
    by_line = {_line(m): m for m in messages}
    feed_lines = path.read_bytes().split(b"\n")
    for line in generated.parse_error_lines:
        assert by_line[line].value() == feed_lines[line - 1]  # the original bytes


def test_missing_topic_fails_with_a_fix(topic_settings: Settings, tmp_path: Path) -> None:
    path, _ = _generate(tmp_path, topic_settings, "cj", "tsv")
    with pytest.raises(PublishError, match="catstream topics create"):
        publish_feed(path, "cj", topic_settings, progress=False)
