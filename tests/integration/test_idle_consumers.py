"""Idle consumers do not spin against a broker that answers empty fetches at once.

noida-db (the local broker) returns an empty fetch immediately instead of holding
it for ``fetch.max.wait.ms``; a consumer with nothing to read then fetches in a
tight loop (an idle worker used 0.23 CPU-s/s). Both of our consume loops wait
between empty fetches: Faust's aiokafka fetcher and the sinks' librdkafka loop.
The tests count fetch requests, not CPU time, so a slow machine cannot pass a
spinning consumer: it only makes fewer requests.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from confluent_kafka import Consumer

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from streams.app import create_app
from streams.topics import create_topics
from workers.sink import Refused, SinkMessage
from workers.sink_runner import SinkRunner, SinkRunnerConfig

IDLE_S = 3.0


def test_an_idle_faust_consumer_fetches_a_few_times_a_second(
    topic_settings: Settings, monkeypatch: Any
) -> None:
    settings = topic_settings.model_copy(update={"idle_fetch_backoff_max_ms": 250})
    create_topics(settings)
    create_app(settings)  # what the worker does first: it installs the fetch back-off
    fetches = 0
    send = AIOKafkaClient.send

    async def counting_send(self: Any, node_id: int, request: Any, **kw: Any) -> Any:
        nonlocal fetches
        if type(request).__name__.startswith("FetchRequest"):
            fetches += 1
        return await send(self, node_id, request, **kw)

    monkeypatch.setattr(AIOKafkaClient, "send", counting_send)

    async def idle() -> int:
        consumer = AIOKafkaConsumer(
            settings.topic("raw"),
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.app_id,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            start = fetches
            deadline = time.monotonic() + IDLE_S
            while time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=200)
            return fetches - start
        finally:
            await consumer.stop()

    during = asyncio.run(idle())
    # At most one fetch per 250 ms once settled, plus the ramp (5, 10, ... 160 ms).
    assert during <= IDLE_S / 0.25 + 8, f"{during} fetches in {IDLE_S} s: the consumer spins"


class NothingSink:
    name = "nothing"

    def add(self, message: SinkMessage) -> None:
        raise AssertionError("the topic is empty")

    def flush(self) -> list[Refused]:
        return []

    def close(self) -> None:
        pass


class FetchCount:
    """librdkafka's own count of Fetch requests sent, from its statistics."""

    def __init__(self) -> None:
        self.fetches = 0

    def __call__(self, stats_json: str) -> None:
        stats = json.loads(stats_json)
        self.fetches = sum(
            broker.get("req", {}).get("Fetch", 0)
            for name, broker in stats.get("brokers", {}).items()
            if not name.startswith("GroupCoordinator")
        )


def test_an_idle_sink_fetches_far_less_than_a_plain_consumer(topic_settings: Settings) -> None:
    """Side by side for the same seconds, so the machine's load hits both alike."""
    settings = topic_settings.model_copy(update={"idle_fetch_backoff_max_ms": 250})
    create_topics(settings)
    topic = settings.topic("embeddings")
    runner = SinkRunner(
        NothingSink(),
        settings,
        SinkRunnerConfig(topics=[topic], group_id=f"{settings.app_id}-sink", instance_id="i0"),
    )
    runner.consumer.close()
    sink_count, plain_count = FetchCount(), FetchCount()
    stats = {"statistics.interval.ms": 200}
    runner.consumer = Consumer({**runner.consumer_config(), **stats, "stats_cb": sink_count})
    plain = Consumer(
        librdkafka_config(
            settings,
            **{
                "group.id": f"{settings.app_id}-plain",
                "auto.offset.reset": "earliest",
                **stats,
                "stats_cb": plain_count,
            },
        )
    )
    plain.subscribe([topic])
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        while not plain.assignment():
            plain.consume(500, 0.2)
        sink_start, plain_start = sink_count.fetches, plain_count.fetches
        deadline = time.monotonic() + IDLE_S
        while time.monotonic() < deadline:
            plain.consume(500, 0.2)  # how the sink consumed before
        sink, spun = sink_count.fetches - sink_start, plain_count.fetches - plain_start
    finally:
        runner.stop()
        thread.join(30)
        plain.close()
    assert spun > 20, f"the plain consumer fetched only {spun} times: is the topic idle?"
    assert sink * 5 < spun, f"idle sink: {sink} fetches, plain consumer: {spun}"
