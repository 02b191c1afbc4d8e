"""The normalise worker end to end on the real local stack (issue: ingest and normalise).

A generated messy feed with 5% corrupt rows is published with the real
publisher and normalised by a real worker process: every published message is
normalised, dead-lettered with a reason or identical to what was published (an
exact duplicate), a republished feed publishes nothing again, price-only updates
are unchanged and title changes are changed, and a burst of malformed input
neither crashes the worker nor blocks valid input.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from deploy.services.processes import free_port
from feeds.generator import GenerateOptions, GenerateReport, generate_feed
from feeds.publisher import publish_feed
from streams.topics import create_topics
from tests.integration.running_worker import Record, WorkerProcess, read_topic, wait_until

PRODUCTS = 2000


@pytest.fixture
def worker(topic_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    create_topics(topic_settings)
    settings = topic_settings.model_copy(update={"metrics_port": free_port()})
    process = WorkerProcess(settings, tmp_path / "worker.log", "--agents", "normalise")
    process.start()
    yield process
    assert process.alive(), "the worker crashed:\n" + process.log_tail()
    process.stop()


def _feed(tmp_path: Path, settings: Settings) -> tuple[Path, GenerateReport]:
    options = GenerateOptions(
        products=PRODUCTS,
        network="generic",
        seed=7,
        fmt="jsonl",
        corrupt_fraction=0.05,
        taxonomy_path=settings.taxonomy_path,
    )
    out = io.BytesIO()
    generated = generate_feed(options, out)
    path = tmp_path / "feed.jsonl"
    path.write_bytes(out.getvalue())
    return path, generated


def _outputs(settings: Settings) -> tuple[list[Record], list[Record]]:
    return read_topic(settings, "normalised", idle_s=2), read_topic(settings, "deadletter", 2)


def _wait_for_outputs(settings: Settings, expected: int) -> tuple[list[Record], list[Record]]:
    result: list[tuple[list[Record], list[Record]]] = []

    def done() -> bool:
        result[:] = [_outputs(settings)]
        normalised, dead = result[0]
        return len(normalised) + len(dead) >= expected

    wait_until(done, 180, f"{expected} normalised or dead-lettered events")
    return result[0]


def test_every_published_row_is_normalised_or_dead_lettered(
    topic_settings: Settings, tmp_path: Path, worker: WorkerProcess
) -> None:
    feed, generated = _feed(tmp_path, topic_settings)
    report = publish_feed(feed, "generic", topic_settings, progress=False)
    assert report.failed == 0
    assert report.sent > PRODUCTS * 0.9
    # The generator's duplicates are exact copies of a product's latest row, later in its
    # partition: identical to what was published, so nothing is published for them.
    expected = report.sent - generated.duplicates
    assert generated.duplicates > 0

    normalised, dead = _wait_for_outputs(topic_settings, expected)

    assert len(normalised) + len(dead) == expected
    assert len(dead) >= report.sent * 0.02  # the generator corrupts 5% of rows
    for letter in dead:
        assert letter.value["reason"]
        assert letter.value["error_class"]
        assert letter.value["source_topic"] == topic_settings.topic("raw")
    for record in normalised:
        assert record.key == record.value["product_id"]
        assert record.value["fingerprint"]

    # The same feed again: every valid row is identical to what was published for its
    # product, or older than it (stale), so nothing is published again. Sentinels
    # published after the feed, on every partition, say when the worker is done.
    publish_feed(feed, "generic", topic_settings, progress=False)
    _publish_sentinels(topic_settings)
    wait_until(lambda: _sentinels_seen(topic_settings), 180, "the sentinels after the feed")
    again = read_topic(topic_settings, "normalised", idle_s=2)
    republished = _after_first(normalised, again)
    assert [r.key for r in republished] == []


def _after_first(first: list[Record], everything: list[Record]) -> list[Record]:
    """Records of ``everything`` that came after ``first``, compared per key.

    Reads interleave partitions differently each time, but one key's records
    are always in offset order.
    """
    seen = Counter(record.key for record in first)
    later: list[Record] = []
    for record in everything:
        if seen[record.key] > 0:
            seen[record.key] -= 1
        elif not (record.key or "").startswith("sentinel"):
            later.append(record)
    return later


SENTINELS = [f"sentinel-{i}" for i in range(32)]  # enough keys to land on every partition


def _publish_sentinels(settings: Settings) -> None:
    producer = Producer(librdkafka_config(settings))
    for key in SENTINELS:
        producer.produce(settings.topic("raw"), key=key, value=json.dumps({"product_id": key}))
    producer.flush(10)


def _sentinels_seen(settings: Settings) -> bool:
    keys = {r.key for r in read_topic(settings, "normalised", idle_s=2)}
    return keys.issuperset(SENTINELS)


def test_price_only_update_is_unchanged_and_title_change_is_changed(
    topic_settings: Settings, worker: WorkerProcess
) -> None:
    base = {
        "product_id": "sku-1",
        "title": "Trail running shoe",
        "brand": "Acme",
        "price": "£59.99",
    }
    updates = [
        {**base, "updated_at": 1_000},
        {**base, "price": "£49.99", "updated_at": 2_000},
        {**base, "title": "Trail running shoe GTX", "updated_at": 3_000},
        {**base, "title": "An older title", "updated_at": 1_500},  # stale: dropped
    ]
    producer = Producer(librdkafka_config(topic_settings))
    for update in updates:
        producer.produce(topic_settings.topic("raw"), key=b"sku-1", value=json.dumps(update))
    producer.flush(10)

    wait_until(lambda: len(read_topic(topic_settings, "normalised", 2)) >= 3, 120, "3 outputs")
    outputs = [r.value for r in read_topic(topic_settings, "normalised", 3)]
    assert [o["changed"] for o in outputs] == [True, False, True]
    assert [o["price"] for o in outputs] == ["59.99", "49.99", "59.99"]
    assert outputs[1]["fingerprint"] == outputs[0]["fingerprint"] != outputs[2]["fingerprint"]

    # The worker process serves its metrics; each event's age was timed when its outputs
    # were confirmed, the stale one's included.
    def ages() -> tuple[float, float]:
        url = f"http://127.0.0.1:{worker.settings.metrics_port}/metrics"
        values = {
            (sample.name, sample.labels.get("stage")): sample.value
            for family in text_string_to_metric_families(httpx.get(url, timeout=10).text)
            for sample in family.samples
        }
        count = values.get(("catstream_record_age_seconds_count", "normalise"), 0.0)
        return count, values.get(("catstream_record_age_seconds_sum", "normalise"), 0.0)

    wait_until(lambda: ages()[0] >= len(updates), 30, "4 record ages in the worker's /metrics")
    count, total = ages()
    assert 0 < total / count < 60


def test_worker_survives_a_burst_of_malformed_messages(
    topic_settings: Settings, worker: WorkerProcess
) -> None:
    producer = Producer(librdkafka_config(topic_settings, **{"linger.ms": 20}))
    garbage = [b"{not json", b"\xff\xfe\x00", b"[]", b'{"product_id": 12}', b'{"title": "x"}']
    for i in range(10_000):
        producer.produce(topic_settings.topic("raw"), key=f"bad-{i}", value=garbage[i % 5])
        if i % 1000 == 0:
            producer.poll(0)
    for i in range(20):
        valid = {"product_id": f"good-{i}", "title": f"Wool scarf {i}"}
        producer.produce(
            topic_settings.topic("raw"), key=valid["product_id"], value=json.dumps(valid)
        )
    producer.flush(30)

    def valid_ones_arrived() -> bool:
        return len(read_topic(topic_settings, "normalised", 2)) >= 20

    wait_until(valid_ones_arrived, 300, "the valid products after the burst")
    assert worker.alive()
    dead = read_topic(topic_settings, "deadletter", 3)
    assert len(dead) == 10_000
    assert {d.value["error_class"] for d in dead} >= {"InvalidJson", "InvalidUtf8"}
