"""Runs a sink as a Kafka consumer loop with at-least-once delivery.

Each round: consume up to ``batch_size`` records (or wait ``batch_wait_s``),
``add`` them to the sink, ``flush`` with back-off until it succeeds, confirm
that every dead letter of the batch was delivered, and only then commit the
offsets. What happens to a record ``add`` fails on is the one error path of
every stage (``catstream.deadletters``): invalid → dead letter with its
reason; any other exception → a ``ProcessingBug`` dead letter, counted by the
guard, which stops the process when it trips. A crash between flush and commit
replays the batch; sinks are idempotent by product id.

An empty round pauses the assignment and waits (``catstream.idle_polling``: the
local broker answers empty fetches at once, so librdkafka's fetcher would spin
at ~0.05 CPU-s/s per idle sink); while idle, a round waits only
``IDLE_PROBE_S`` for records, so the fetcher runs a fraction of the time.

Static group membership (``group.instance.id``) lets a killed sink rejoin its
partitions at once instead of waiting for a session timeout the local broker
never enforces.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from catstream.backoff import Backoff, retry_blocking
from catstream.deadletters import (
    DeadLetterPolicy,
    DeadLetterProducer,
    Disposition,
    SourceMessage,
    disposition,
)
from catstream.errors import DeadLetterLimitExceeded
from catstream.idle_polling import IdlePolling
from catstream.kafka_config import librdkafka_config
from catstream.liveness import LIVENESS
from catstream.logs import get_logger
from catstream.metrics import EVENTS, SINK_RETRIES, STAGE_SECONDS
from catstream.settings import Settings
from workers.sink import Sink, SinkMessage

T = TypeVar("T")

# While idle, how long one round waits for records after resuming: a local fetch
# round trip, with room for a busy host (a round that misses its records only
# delays them by the next idle wait; nothing is lost, they are fetched again).
IDLE_PROBE_S = 0.05
# While a round collects records, how long each fetch burst lasts before the assignment is
# paused again for ``sink_fetch_interval_ms``: a local fetch round trip or a few.
FETCH_BURST_S = 0.01


@dataclass
class SinkRunnerConfig:
    topics: list[str]
    group_id: str
    instance_id: str
    batch_size: int = 500
    batch_wait_s: float = 0.2
    max_backoff_s: float = 10.0
    # Pause between fetch bursts within a round; None: settings.sink_fetch_interval_ms, 0: off.
    fetch_interval_s: float | None = None


@dataclass
class SinkRunner:
    """Consumes ``config.topics`` into ``sink`` until ``stop()`` is called."""

    sink: Sink
    settings: Settings
    config: SinkRunnerConfig
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.log = get_logger(__name__, sink=self.sink.name, group=self.config.group_id)
        self.consumer = Consumer(self.consumer_config())
        self.policy = DeadLetterPolicy(self.sink.name, self.settings)
        self.dead_letters = DeadLetterProducer(
            self.policy,
            Producer(
                librdkafka_config(
                    self.settings,
                    **{
                        "linger.ms": 5,
                        "compression.type": self.settings.producer_compression,
                    },
                )
            ),
            self.settings.topic("deadletter"),
        )
        self.backoff = Backoff(base_delay_s=0.2, max_delay_s=self.config.max_backoff_s)
        self.idle = IdlePolling(max_delay_s=self.settings.idle_fetch_backoff_max_ms / 1000)
        interval = self.config.fetch_interval_s
        self.fetch_interval_s = (
            self.settings.sink_fetch_interval_ms / 1000 if interval is None else interval
        )

    def consumer_config(self) -> dict[str, object]:
        return librdkafka_config(
            self.settings,
            **{
                "group.id": self.config.group_id,
                "group.instance.id": self.config.instance_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10000,
            },
        )

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self.consumer.subscribe(self.config.topics)
        self.log.info("sink_started", topics=self.config.topics)
        try:
            while not self._stopping.is_set():
                self.run_once()
        except DeadLetterLimitExceeded as exc:
            # Nothing of this batch is committed; the restarted process handles it again.
            LIVENESS.stop_process(self.sink.name, str(exc))
        finally:
            self.consumer.close()
            self.dead_letters.producer.flush(10)
            self.sink.close()
            self.log.info("sink_stopped")

    def run_once(self) -> int:
        """One consume → add → flush → confirm dead letters → commit round; returns records."""
        wait_s = self.config.batch_wait_s
        if self.idle.empty_in_a_row:
            wait_s = min(wait_s, IDLE_PROBE_S)
        records = self._collect(wait_s)
        batch = [r for r in records if self._is_record(r)]
        delay = self.idle.fetched(bool(records))
        if not batch:
            if delay:
                self._pause_for(delay)
            return 0
        started = time.perf_counter()
        for record in batch:
            self._add(record)
        for refused in self._until_done(self.sink.flush, self.sink.name):
            self.dead_letters.publish(SourceMessage.of(refused.message), refused.error)
        # The dead letters must be durable before the offsets they replace are committed.
        self._until_done(self.dead_letters.confirm, "kafka")
        self._commit(batch)
        STAGE_SECONDS.labels(stage=self.sink.name).observe(time.perf_counter() - started)
        EVENTS.labels(stage=self.sink.name, outcome="written").inc(len(batch))
        return len(batch)

    def _collect(self, wait_s: float) -> list[Message]:
        """Up to ``batch_size`` records within ``wait_s``, fetched in short bursts.

        librdkafka's fetcher sends the next fetch as soon as one returns, and the local
        broker answers at once, so while a round waits for a trickle of records (a
        stream at a few hundred products/s or less) the fetcher spins: one consumer
        following 20 records/s cost noida-db 0.13-0.22 CPU-s/s and itself as much
        (bench/README). Between bursts the assignment is paused, so a round fetches
        for a fraction of its wait; records wait at most one interval longer.
        """
        interval = self.fetch_interval_s
        if interval <= 0 or wait_s <= FETCH_BURST_S:
            return list(self.consumer.consume(self.config.batch_size, wait_s))
        deadline = time.monotonic() + wait_s
        records: list[Message] = []
        while True:
            remaining = deadline - time.monotonic()
            wanted = self.config.batch_size - len(records)
            records += self.consumer.consume(wanted, max(0.0, min(FETCH_BURST_S, remaining)))
            remaining = deadline - time.monotonic()
            if len(records) >= self.config.batch_size or remaining <= FETCH_BURST_S:
                return records
            self._pause_for(min(interval, remaining - FETCH_BURST_S))
            if self._stopping.is_set():
                return records

    def _pause_for(self, delay_s: float) -> None:
        """Stop fetching for ``delay_s`` (or until ``stop()``), then fetch again."""
        assignment = self.consumer.assignment()
        if not assignment:
            self._stopping.wait(delay_s)
            return
        self.consumer.pause(assignment)
        try:
            self._stopping.wait(delay_s)
        finally:
            try:
                self.consumer.resume(assignment)
            except KafkaException as exc:  # a partition lost meanwhile: the next
                # assignment starts unpaused anyway
                self.log.info("resume_failed", error=str(exc))

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
            self._until_done(lambda: self.sink.add(message), self.sink.name)
            self.policy.ok()
        except Exception as exc:
            if disposition(exc) is Disposition.RETRY:
                raise  # shutting down mid-retry: nothing is committed
            self.dead_letters.publish(SourceMessage.of(message), exc)

    def _commit(self, batch: list[Message]) -> None:
        try:
            self.consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # Not committing never loses a record: after the rebalance (or restart) that
            # caused this, the batch is delivered again and rewritten idempotently.
            self.log.warning("commit_failed", error=str(exc))

    def _until_done(self, call: Callable[[], T], dependency: str) -> T:
        def wait(delay: float) -> bool:
            SINK_RETRIES.labels(sink=self.sink.name).inc()
            # Shutting down mid-outage: leave offsets uncommitted; the batch replays.
            return not self._stopping.wait(delay)

        return retry_blocking(call, dependency=dependency, wait=wait, backoff=self.backoff)


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The offset to commit per partition: one past the last record handled."""
    last: dict[tuple[str, int], int] = {}
    for record in batch:
        key = (record.topic() or "", record.partition() or 0)
        last[key] = max(last.get(key, -1), record.offset() or 0)
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in last.items()]
