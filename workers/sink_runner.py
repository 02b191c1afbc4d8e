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

Paced fetching (``sink_fetch_interval_ms``) goes further: a round fetches in
bursts of one fetch response per leader broker (a record or an end-of-partition
event), with the assignment paused between bursts. Two things
about librdkafka make that work (both measured, bench/README):

* ``resume()`` does not wake the fetcher. Pause and resume are handled by
  librdkafka's main thread; the broker thread that fetches decides again only
  on its own I/O or its 1 s timer, so after a resume it fetched only when that
  timer fell into a moment the partitions happened to be unpaused (a trickle's
  records waited 1.8 s at the median, a restarted sink in the chaos test for
  minutes). After each resume the runner asks each partition leader for a
  watermark (one ListOffsets request), and that I/O wakes its fetcher at once.
* Pausing discards a fetch in flight, so a burst of fixed length starved
  whenever the broker took longer than the burst to answer (noida-db does,
  while it rewrites its state). A burst lasts until each leader has answered.

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
# While a round collects records, how long one consume call of a fetch burst waits; a burst
# goes on until every assigned partition has answered (or the round's time is up).
FETCH_BURST_S = 0.01
# How long a wake-up watermark request may take before the runner gives up on it (the
# fetcher then wakes on its own 1 s timer; nothing is lost).
WAKE_TIMEOUT_S = 1.0
# How long a clean stop waits for its consumer to give its partitions back.
LEAVE_TIMEOUT_S = 5.0


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
    # Called when the group takes partitions away (a sink that caches what it learnt
    # about its partitions' products forgets it: another sink may own them meanwhile).
    on_revoke: Callable[[], None] | None = None


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
        self._paused: list[TopicPartition] = []  # what _stop_fetching paused
        self._leaders_of: tuple[frozenset[tuple[str, int]], dict[tuple[str, int], int]] = (
            frozenset(),
            {},
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
                # End-of-partition events tell a paced burst that a broker answered (_burst).
                "enable.partition.eof": True,
            },
        )

    def _revoked(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._paused = []  # the next assignment starts unpaused
        if self.config.on_revoke is not None:
            self.config.on_revoke()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self.consumer.subscribe(self.config.topics, on_revoke=self._revoked)
        self.log.info("sink_started", topics=self.config.topics)
        try:
            while not self._stopping.is_set():
                self.run_once()
            self._leave_group()  # asked to stop, its last batch committed: a clean stop
        except DeadLetterLimitExceeded as exc:
            # Nothing of this batch is committed; the restarted process handles it again.
            LIVENESS.stop_process(self.sink.name, str(exc))
        finally:
            self.consumer.close()
            self.dead_letters.producer.flush(10)
            self.sink.close()
            self.log.info("sink_stopped")

    def _leave_group(self) -> None:
        """Hand the partitions over now (streams/static_membership.py, for the agents).

        librdkafka, like aiokafka and the Java client (KIP-345), sends no ``LeaveGroup``
        when a static member closes, and the local broker never times a session out: a
        sink that stopped cleanly kept its partitions, and a second instance of it never
        got them. An explicit ``unsubscribe()`` does leave, once the revocation has been
        served by polling; ``close()`` then waits for the answer. A crash or SIGKILL
        still keeps the slot for the restart."""
        started = time.monotonic()
        self.consumer.unsubscribe()
        while self.consumer.assignment() and time.monotonic() - started < LEAVE_TIMEOUT_S:
            self.consumer.poll(0.05)  # serves the revocation; records polled are not ours
        self.log.info("sink_left_group", seconds=round(time.monotonic() - started, 3))

    def run_once(self) -> int:
        """One consume → add → flush → confirm dead letters → commit round; returns records."""
        batch = self._collect(self.config.batch_wait_s, probe=bool(self.idle.empty_in_a_row))
        delay = self.idle.fetched(bool(batch))
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

    def _collect(self, wait_s: float, *, probe: bool = False) -> list[Message]:
        """Up to ``batch_size`` records within ``wait_s``; ``probe``: while idle, only
        look whether any arrived.

        librdkafka's fetcher sends the next fetch as soon as one returns, and the local
        broker answers at once, so while a round waits for a trickle of records (a
        stream at a few hundred products/s or less) the fetcher spins: one consumer
        following 20 records/s cost noida-db 0.13-0.22 CPU-s/s and itself as much
        (bench/README). Paced, a round fetches in bursts (one answer per leader) with
        the assignment paused ``fetch_interval_s`` between them; records wait at most
        one interval longer.
        """
        interval = self.fetch_interval_s
        if interval <= 0:
            timeout = min(wait_s, IDLE_PROBE_S) if probe else wait_s
            return self._records(self.consumer.consume(self.config.batch_size, timeout))
        deadline = time.monotonic() + wait_s
        records: list[Message] = []
        self._start_fetching()
        while True:
            records += self._burst(self.config.batch_size - len(records), deadline)
            remaining = deadline - time.monotonic()
            if probe or len(records) >= self.config.batch_size or remaining <= FETCH_BURST_S:
                # Paused while the batch is written too: a flush takes milliseconds to
                # seconds, and the fetcher would spin all that time.
                self._stop_fetching()
                return records
            self._pause_for(min(interval, remaining - FETCH_BURST_S))
            if self._stopping.is_set():
                return records

    def _burst(self, wanted: int, deadline: float) -> list[Message]:
        """Consume until each leader broker has answered one fetch (a record or an
        end-of-partition event of one of its partitions: a fetch response carries all of
        that broker's partitions), ``wanted`` records arrived, or ``deadline``. However
        long the broker takes to answer: pausing earlier would discard the answer."""
        records: list[Message] = []
        answered: set[int] = set()
        while True:
            remaining = deadline - time.monotonic()
            timeout = max(0.0, min(FETCH_BURST_S, remaining))
            # poll() returns at the first event (consume() would wait out its timeout
            # with the fetcher spinning), then whatever else that answer queued.
            first = self.consumer.poll(timeout)
            messages = [] if first is None else [first]
            if first is not None and wanted - len(records) > 1:
                messages += self.consumer.consume(wanted - len(records) - 1, 0)
            records += self._records(messages)
            assignment = self.consumer.assignment()
            leaders = self._leaders(assignment)
            answered.update(
                leaders.get((m.topic() or "", m.partition() or 0), -1) for m in messages
            )
            if len(records) >= wanted or (assignment and set(leaders.values()) <= answered):
                return records
            if time.monotonic() >= deadline:
                return records
            if not assignment:  # not joined yet: wait for the assignment, not the fetcher
                self._stopping.wait(min(FETCH_BURST_S, max(0.0, deadline - time.monotonic())))

    def _records(self, messages: list[Message]) -> list[Message]:
        return [m for m in messages if self._is_record(m)]

    def _pause_for(self, delay_s: float) -> None:
        """Stop fetching for ``delay_s`` (or until ``stop()``), then fetch again."""
        self._stop_fetching()
        try:
            self._stopping.wait(delay_s)
        finally:
            self._start_fetching()

    def _stop_fetching(self) -> None:
        if self._paused:
            return
        self._paused = self.consumer.assignment()
        if self._paused:
            self.consumer.pause(self._paused)

    def _start_fetching(self) -> None:
        """Resume what ``_stop_fetching`` paused, and wake the fetchers (module docstring)."""
        paused, self._paused = self._paused, []
        if not paused:
            return
        try:
            self.consumer.resume(paused)
        except KafkaException as exc:  # a partition lost meanwhile: the next
            # assignment starts unpaused anyway
            self.log.info("resume_failed", error=str(exc))
        self._wake_fetchers(paused)

    def _wake_fetchers(self, assignment: list[TopicPartition]) -> None:
        """Make each partition leader's fetcher notice the resume now (module docstring):
        one watermark request per leader, whose I/O wakes that broker thread."""
        woken: set[int] = set()
        for (topic, partition), leader in self._leaders(assignment).items():
            if leader in woken:
                continue
            woken.add(leader)
            try:
                self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=WAKE_TIMEOUT_S, cached=False
                )
            except KafkaException as exc:  # the broker is down or slow: its fetcher
                # wakes on its own timer, and the consume that follows waits for it
                self.log.debug("fetcher_wake_failed", error=str(exc))

    def _leaders(self, assignment: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """Each assigned partition's leader broker id (-1 where unknown), read from the
        broker's metadata once per assignment."""
        key = frozenset((tp.topic, tp.partition) for tp in assignment)
        if key != self._leaders_of[0]:
            self._leaders_of = (key, _partition_leaders(self.consumer, key))
        return self._leaders_of[1]

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


def _partition_leaders(
    consumer: Consumer, partitions: frozenset[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Each partition's leader broker id; -1 for all if the metadata cannot be read (one
    wake-up request then, and any answer ends a burst)."""
    if not partitions:
        return {}
    try:
        topics = consumer.list_topics(timeout=WAKE_TIMEOUT_S).topics
    except KafkaException:
        return dict.fromkeys(partitions, -1)
    leaders: dict[tuple[str, int], int] = {}
    for topic, partition in sorted(partitions):
        meta = topics.get(topic)
        part = meta.partitions.get(partition) if meta is not None else None
        leaders[(topic, partition)] = part.leader if part is not None else -1
    return leaders
