"""Runs a sink as a Kafka consumer loop with at-least-once delivery.

Each round: consume up to ``batch_size`` records (or wait ``batch_wait_s``),
``add`` them to the sink, ``flush`` with back-off until it succeeds, and only
then commit the offsets. A record the sink rejects as invalid goes to the
dead-letter topic (and its offset is committed with the rest). A crash between
flush and commit replays the batch; sinks are idempotent by product id.

Static group membership (``group.instance.id``) lets a killed sink rejoin its
partitions at once instead of waiting for a session timeout the local broker
never enforces.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from catstream.deadletters import dead_letter_event
from catstream.errors import InvalidMessage, RecoverableError
from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.metrics import DEAD_LETTERS, DEGRADED, EVENTS, SINK_RETRIES, STAGE_SECONDS
from catstream.settings import Settings
from workers.sink import Sink, SinkMessage


@dataclass
class SinkRunnerConfig:
    topics: list[str]
    group_id: str
    instance_id: str
    batch_size: int = 500
    batch_wait_s: float = 0.2
    max_backoff_s: float = 10.0


@dataclass
class SinkRunner:
    """Consumes ``config.topics`` into ``sink`` until ``stop()`` is called."""

    sink: Sink
    settings: Settings
    config: SinkRunnerConfig
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.log = get_logger(__name__, sink=self.sink.name, group=self.config.group_id)
        self.consumer = Consumer(
            librdkafka_config(
                self.settings,
                **{
                    "group.id": self.config.group_id,
                    "group.instance.id": self.config.instance_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 10000,
                },
            )
        )
        self.dead_letters = Producer(librdkafka_config(self.settings, **{"linger.ms": 5}))

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self.consumer.subscribe(self.config.topics)
        self.log.info("sink_started", topics=self.config.topics)
        try:
            while not self._stopping.is_set():
                self.run_once()
        finally:
            self.consumer.close()
            self.dead_letters.flush(10)
            self.sink.close()
            self.log.info("sink_stopped")

    def run_once(self) -> int:
        """One consume → add → flush → commit round; returns records handled."""
        records = self.consumer.consume(self.config.batch_size, self.config.batch_wait_s)
        batch = [r for r in records if self._is_record(r)]
        if not batch:
            return 0
        started = time.perf_counter()
        for record in batch:
            self._add(record)
        self._flush_until_done()
        self.consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
        STAGE_SECONDS.labels(stage=self.sink.name).observe(time.perf_counter() - started)
        EVENTS.labels(stage=self.sink.name, outcome="written").inc(len(batch))
        return len(batch)

    def _is_record(self, record: Message) -> bool:
        error = record.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            self.log.warning("consume_error", error=str(error))
        return False

    def _add(self, record: Message) -> None:
        message = SinkMessage(
            topic=record.topic() or "",
            partition=record.partition() or 0,
            offset=record.offset() or 0,
            key=record.key(),
            value=record.value(),
            timestamp_ms=record.timestamp()[1],
        )
        try:
            self.sink.add(message)
        except InvalidMessage as exc:
            self._dead_letter(message, exc)

    def _dead_letter(self, message: SinkMessage, exc: InvalidMessage) -> None:
        self.log.warning(
            "dead_lettered",
            product_id=message.product_id,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=exc.reason,
        )
        event = dead_letter_event(
            value=message.value,
            key=message.key,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            stage=self.sink.name,
            error_class=exc.error_class,
            reason=exc.reason,
        )
        self.dead_letters.produce(
            self.settings.topic("deadletter"),
            key=message.key,
            value=json.dumps(event.model_dump(mode="json")).encode(),
        )
        # The dead letter must be durable before the offset it replaces is committed.
        self.dead_letters.flush(30)
        DEAD_LETTERS.labels(stage=self.sink.name, error=exc.error_class).inc()

    def _flush_until_done(self) -> None:
        attempt = 0
        while True:
            try:
                self.sink.flush()
                DEGRADED.labels(dependency=self.sink.name).set(0)
                return
            except RecoverableError as exc:
                attempt += 1
                delay = min(self.config.max_backoff_s, 0.2 * 2**attempt) * random.uniform(0.5, 1)
                DEGRADED.labels(dependency=self.sink.name).set(1)
                SINK_RETRIES.labels(sink=self.sink.name).inc()
                self.log.warning(
                    "flush_retry", attempt=attempt, delay_s=round(delay, 2), error=str(exc)
                )
                if self._stopping.wait(delay):
                    # Shutting down mid-outage: leave offsets uncommitted; the batch replays.
                    raise


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The offset to commit per partition: one past the last record handled."""
    last: dict[tuple[str, int], int] = {}
    for record in batch:
        key = (record.topic() or "", record.partition() or 0)
        last[key] = max(last.get(key, -1), record.offset() or 0)
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in last.items()]
