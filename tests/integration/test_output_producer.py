"""The agents' librdkafka outputs on the real broker (issue 10, session 6).

The normalise agent's outputs and its ``product-state`` changelog go through
``streams.output_producer`` instead of Faust's aiokafka producer. Two things must
not change with it: the partition a product's events land on (the infer agent's
table and every consumer's ordering rely on it), and what a restarted worker
recovers from the changelog (a restarted normalise agent still knows every
product it published, so an identical re-feed publishes nothing).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from catstream.settings import Settings
from streams.output_producer import OutputProducer
from streams.topic_records import publish_json
from streams.topics import create_topics
from tests.integration.running_worker import WorkerProcess, read_topic, wait_until

PRODUCTS = 40


def test_outputs_land_on_the_partition_faust_would_choose(topic_settings: Settings) -> None:
    create_topics(topic_settings)
    keys = [f"product-{i}".encode() for i in range(200)]
    output = OutputProducer(topic_settings)
    topic = output.topic(topic_settings.topic("normalised"))

    async def send_all() -> None:
        deliveries = [await topic.send(key=key, value=b"{}") for key in keys]
        await asyncio.wait_for(asyncio.gather(*deliveries), 60)

    asyncio.run(send_all())
    output.close()

    partitions = list(range(topic_settings.topic_partitions))
    faust_choice = DefaultPartitioner()
    records = read_topic(topic_settings, "normalised", idle_s=1)
    assert sorted(r.key for r in records if r.key) == sorted(k.decode() for k in keys)
    # Before (librdkafka's default partitioner, CRC32): most keys on another partition.
    assert {r.key: r.partition for r in records} == {
        k.decode(): faust_choice(k, partitions, partitions) for k in keys
    }


def _product(product_id: str, updated_at: str) -> tuple[str, dict[str, Any]]:
    value: dict[str, Any] = {
        "product_id": product_id,
        "title": f"Stainless steel water bottle {product_id}",
        "price": "12.50",
        "currency": "EUR",
        "updated_at": updated_at,
    }
    return product_id, value


def _feed(updated_at: str) -> list[tuple[str, dict[str, Any]]]:
    return [_product(f"p{i}", updated_at) for i in range(PRODUCTS)]


def test_a_restarted_worker_recovers_product_state_from_the_changelog(
    topic_settings: Settings, tmp_path: Path
) -> None:
    create_topics(topic_settings)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(topic_settings, log, "--agents", "normalise").start()
    try:
        publish_json(topic_settings, _feed("2026-01-01T00:00:00Z"))
        wait_until(
            lambda: len(read_topic(topic_settings, "normalised", idle_s=1)) >= PRODUCTS,
            timeout_s=180,
            what="the first feed normalised",
        )
    finally:
        worker.stop()
    assert len(read_topic(topic_settings, "normalised", idle_s=1)) == PRODUCTS

    # A new process knows only what it reads back from the product-state changelog.
    worker = WorkerProcess(topic_settings, log, "--agents", "normalise").start()
    try:
        publish_json(topic_settings, _feed("2026-01-02T00:00:00Z"))  # identical but newer
        publish_json(topic_settings, [_product("sentinel", "2026-01-02T00:00:00Z")])
        wait_until(
            lambda: any(r.key == "sentinel" for r in read_topic(topic_settings, "normalised", 1)),
            timeout_s=180,
            what="the sentinel normalised",
        )
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
    published = Counter(r.key for r in read_topic(topic_settings, "normalised", idle_s=1))
    # Every product's state was recovered: the identical re-feed published nothing, and
    # the sentinel (a new id, published after it on its own partition) came through.
    assert published == Counter({**{f"p{i}": 1 for i in range(PRODUCTS)}, "sentinel": 1})
