"""Publishes a feed file to ``products.raw``: one event per row, keyed by product id.

Rows are mapped through the network's mapping and sent as JSON, *without*
validation: a row that parses but is semantically invalid (no id, wrong types)
is still published, and the normalise stage dead-letters it with a reason, so
every problem is visible in one place. Rows that cannot be parsed from the file
are skipped and reported with their line numbers. JSON lines that are not valid
JSON are the exception: they are published as their raw bytes, so the stream's
dead-letter path sees real garbage.

The producer is idempotent (no duplicates on retry) and lz4-compressed; every
message's delivery report is counted, so ``sent + failed + skipped == rows``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from tqdm import tqdm

from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.metrics import EVENTS
from catstream.settings import Settings
from feeds.formats import FeedRow, ParseError, guess_format, read_feed
from feeds.mapping import NetworkMapping, load_mapping

STAGE = "feed_publish"
Headers = list[tuple[str, str | bytes | None]]
MAX_REPORTED_ERRORS = 1000
_FLUSH_TIMEOUT_S = 120.0
_PRODUCER_SETTINGS: dict[str, Any] = {
    "enable.idempotence": True,
    "compression.type": "lz4",  # consumers decode it: librdkafka natively, aiokafka via cramjam
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "message.timeout.ms": 60_000,
    "client.id": "catstream-feed-publisher",
}

log = get_logger(__name__)


class PublishError(RuntimeError):
    """The feed cannot be published at all (broker unreachable, topic missing)."""


@dataclass
class PublishReport:
    path: str
    topic: str
    rows: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    raw_forwarded: int = 0  # JSON lines published as raw bytes (counted in sent/failed)
    skipped_rows: list[ParseError] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        return (
            f"{self.path}: {self.rows} rows → {self.topic}: sent {self.sent}, "
            f"failed {self.failed}, skipped {self.skipped} "
            f"({self.raw_forwarded} unparsable JSON lines forwarded raw) "
            f"in {self.seconds:.1f}s ({rate:.0f} rows/s)"
        )


def _raw_key(raw: bytes, mapping: NetworkMapping) -> bytes | None:
    """Best-effort key for an unparsable JSON line, so it lands beside its product."""
    for column in mapping.fields.get("product_id", ()):
        match = re.search(rb'"' + re.escape(column.encode()) + rb'"\s*:\s*"([^"\\]{1,256})"', raw)
        if match:
            return match.group(1)
    return None


def _encode(event: dict[str, Any]) -> bytes:
    try:
        return json.dumps(event, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from the feed: keep it, escaped
        return json.dumps(event, ensure_ascii=True, default=str).encode("ascii")


def _key(event: dict[str, Any]) -> bytes | None:
    product_id = event.get("product_id")
    if isinstance(product_id, str) and product_id:
        return product_id.encode("utf-8", "replace")
    return None


class _Sender:
    """Wraps the producer: produce with back-pressure, count delivery reports."""

    def __init__(self, settings: Settings, report: PublishReport) -> None:
        self.report = report
        self.producer = Producer(librdkafka_config(settings, **_PRODUCER_SETTINGS))

    def check_topic(self, topic: str, bootstrap: str) -> None:
        try:
            metadata = self.producer.list_topics(timeout=10)
        except KafkaException as exc:
            raise PublishError(
                f"cannot reach Kafka at {bootstrap} ({exc}); start the local stack with "
                "`catstream stack up` or set CATSTREAM_KAFKA_BOOTSTRAP"
            ) from exc
        if topic not in metadata.topics:
            raise PublishError(
                f"topic {topic} does not exist on {bootstrap}; create it with "
                "`catstream topics create` (check CATSTREAM_TOPIC_PREFIX)"
            )

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.report.sent += 1
            EVENTS.labels(stage=STAGE, outcome="sent").inc()
        else:
            self._failed(message.key(), error.str())

    def _failed(self, key: object, reason: str) -> None:
        self.report.failed += 1
        EVENTS.labels(stage=STAGE, outcome="failed").inc()
        if len(self.report.failures) < MAX_REPORTED_ERRORS:
            self.report.failures.append(f"key {key!r}: {reason}")

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)
            except KafkaException as exc:  # e.g. message larger than message.max.bytes
                self._failed(key, str(exc))
                break
        self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(_FLUSH_TIMEOUT_S)
        if remaining:
            self.report.failed += remaining
            self.report.failures.append(
                f"{remaining} messages undelivered after {_FLUSH_TIMEOUT_S:.0f}s; "
                "check the broker and publish the feed again (the producer is idempotent "
                "and the stream skips unchanged products)"
            )


def _skip(report: PublishReport, error: ParseError) -> None:
    report.skipped += 1
    EVENTS.labels(stage=STAGE, outcome="skipped").inc()
    if len(report.skipped_rows) < MAX_REPORTED_ERRORS:
        report.skipped_rows.append(error)
    log.warning("feed_row_skipped", line=error.line, reason=error.reason)


def publish_feed(
    path: Path | str,
    network: str,
    settings: Settings,
    fmt: str | None = None,
    mapping: Path | str | None = None,
    *,
    progress: bool | None = None,
) -> PublishReport:
    """Publish every row of ``path`` to the raw topic; see the module docstring."""
    network_mapping = load_mapping(network, mapping)
    fmt = fmt or guess_format(path)
    topic = settings.topic("raw")
    report = PublishReport(path=str(path), topic=topic)
    sender = _Sender(settings, report)
    sender.check_topic(topic, settings.kafka_bootstrap)
    source = Path(path).name.encode()
    started = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(unit=" rows", disable=not show, desc=f"publishing {Path(path).name}") as bar:
        for record in read_feed(path, fmt):
            report.rows += 1
            bar.update(1)
            headers: Headers = [
                ("catstream-source", source),
                ("catstream-line", str(record.line).encode()),
                ("catstream-network", network_mapping.name.encode()),
            ]
            if isinstance(record, FeedRow):
                event = network_mapping.map_row(record.fields)
                sender.send(topic, _key(event), _encode(event), headers)
            elif isinstance(record, ParseError) and record.raw is not None:
                report.raw_forwarded += 1
                sender.send(topic, _raw_key(record.raw, network_mapping), record.raw, headers)
            else:
                _skip(report, record)
        sender.flush()
    report.seconds = time.perf_counter() - started
    log.info(
        "feed_published",
        path=str(path),
        topic=topic,
        rows=report.rows,
        sent=report.sent,
        failed=report.failed,
        skipped=report.skipped,
        raw_forwarded=report.raw_forwarded,
        seconds=round(report.seconds, 2),
    )
    return report
