"""The sink runner's error path on in-memory Kafka: nothing is committed before its
dead letters are delivered, and no record can kill the sink."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

from catstream.errors import InvalidMessage
from catstream.liveness import LIVENESS
from catstream.settings import Settings
from schemas.events import DeadLetter
from tests.unit.test_deadletters import RecordingProducer
from workers.sink import Refused, SinkMessage
from workers.sink_runner import FETCH_BURST_S, IDLE_PROBE_S, SinkRunner, SinkRunnerConfig


@dataclass
class Record:
    """The parts of a confluent-kafka Message the runner reads."""

    _offset: int
    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return "products.embeddings"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def error(self) -> None:
        return None


@dataclass
class EndOfPartition(Record):
    """The end-of-partition event librdkafka sends once per fetch that reaches the end."""

    _offset: int = 0
    _key: bytes | None = None
    _value: bytes | None = None

    def error(self) -> Any:
        return KafkaError(KafkaError._PARTITION_EOF)


EOF = EndOfPartition()
PARTITION = TopicPartition("products.embeddings", 0)


@dataclass
class Consumer:
    batches: list[list[Record]]
    commits: list[list[tuple[int, int]]] = field(default_factory=list)
    on_empty: Any = None  # called when the batches run out (stops a run() loop)
    timeouts: list[float] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # "pause" / "resume", in order
    pending: list[Record] = field(default_factory=list)  # queued by the last poll's answer

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def unsubscribe(self) -> None:
        self.paused.append("unsubscribe")

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        if timeout == 0:  # draining what the last poll's answer queued
            pending, self.pending = self.pending, []
            return pending
        self.timeouts.append(timeout)
        return self._next_batch()

    def poll(self, timeout: float) -> Record | None:
        """The first event of the next batch; the rest wait for ``consume(n, 0)``."""
        self.timeouts.append(timeout)
        batch = self._next_batch()
        self.pending = batch[1:]
        return batch[0] if batch else None

    def _next_batch(self) -> list[Record]:
        if not self.batches and self.on_empty is not None:
            self.on_empty()
        # Caught up: the partition's end, as librdkafka reports it after each resume.
        return self.batches.pop(0) if self.batches else [EOF]

    def assignment(self) -> list[TopicPartition]:
        return [PARTITION]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused.append("pause")

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.append("resume")

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float, cached: bool
    ) -> tuple[int, int]:
        self.paused.append("wake")
        return (0, 0)

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics={})

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])

    def close(self) -> None:
        pass


@dataclass
class PickySink:
    """Refuses ``invalid``, fails with a bug on ``bug``, keeps the rest."""

    name: str = "memory"
    kept: list[str] = field(default_factory=list)
    flushed: list[list[str]] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)

    def add(self, message: SinkMessage) -> None:
        if message.key == b"invalid":
            raise InvalidMessage("wrong shape; fix the producer", error_class="SchemaViolation")
        if message.key == b"bug":
            raise AttributeError("'NoneType' object has no attribute 'vector'")
        if message.key == b"refused-by-store":
            error = InvalidMessage(
                "the store refused it; fix the field", error_class="MappingError"
            )
            self.refused.append(Refused(message, error))
            return
        self.kept.append(message.product_id or "")

    def flush(self) -> list[Refused]:
        self.flushed.append(list(self.kept))
        refused, self.refused = self.refused, []
        return refused

    def close(self) -> None:
        pass


def _runner(
    batches: list[list[Record]],
    producer: RecordingProducer,
    config: dict[str, Any] | None = None,
    **settings: Any,
) -> Any:
    runner = SinkRunner(
        PickySink(),
        Settings(**settings),
        SinkRunnerConfig(
            topics=["products.embeddings"], group_id="g", instance_id="i", **(config or {})
        ),
    )
    runner.consumer.close()
    runner.consumer = Consumer(batches)  # type: ignore[assignment]
    runner.dead_letters.producer = producer
    return runner


def test_invalid_and_buggy_records_are_dead_lettered_and_the_batch_committed() -> None:
    producer = RecordingProducer()
    batch = [Record(0, b"a", b"{}"), Record(1, b"invalid", b"{}"), Record(2, b"bug", b"{}")]
    runner = _runner([batch], producer)
    assert runner.run_once() == 3
    letters = [DeadLetter.model_validate_json(value) for _, _, value in producer.produced]
    assert [(d.offset, d.error_class) for d in letters] == [
        (1, "SchemaViolation"),
        (2, "ProcessingBug"),
    ]
    assert "AttributeError" in letters[1].reason
    assert runner.consumer.commits == [[(0, 3)]]


def test_no_commit_until_the_dead_letters_are_delivered() -> None:
    # Before: the runner ignored what flush() returned and committed anyway.
    producer = RecordingProducer(refuse=2)
    runner = _runner([[Record(0, b"invalid", b"{}")]], producer, deadletter_max_consecutive=100)
    commits_when_refused: list[int] = []

    def wait(delay: float) -> bool:
        commits_when_refused.append(len(runner.consumer.commits))
        return True

    def fast(call: Any, dependency: str) -> Any:
        from catstream.backoff import retry_blocking

        return retry_blocking(call, dependency=dependency, wait=wait)

    runner._until_done = fast
    assert runner.run_once() == 1
    assert commits_when_refused == [0, 0]  # both retries happened before any commit
    assert runner.consumer.commits == [[(0, 1)]]
    assert len(producer.produced) == 3


def test_a_record_the_store_refuses_at_flush_is_dead_lettered_before_the_commit() -> None:
    # Before: the Elasticsearch sink sent such letters itself, outside the shared path.
    producer = RecordingProducer()
    runner = _runner([[Record(0, b"refused-by-store", b"{}"), Record(1, b"ok", b"{}")]], producer)
    assert runner.run_once() == 2
    assert len(producer.produced) == 1
    assert runner.consumer.commits == [[(0, 2)]]


def test_the_guard_stops_the_process_and_commits_nothing(stops: list[str]) -> None:
    producer = RecordingProducer()
    batch = [Record(i, b"bug", b"{}") for i in range(5)]
    runner = _runner([batch], producer, deadletter_max_consecutive=3)
    runner.consumer.on_empty = runner.stop  # without the guard, run() would end here
    runner.run()
    assert stops == ["stop"]
    assert runner.consumer.commits == []
    assert "memory" in LIVENESS.stopping


def test_an_idle_sink_pauses_fetching_between_short_rounds() -> None:
    """The local broker answers an empty fetch at once: librdkafka would fetch in a
    tight loop for as long as a round waits. Empty rounds pause the assignment for a
    growing wait and then wait only a probe's time for records; records end that."""
    batch = [Record(0, b"a", b"{}")]
    runner = _runner(
        [[], [], [], batch, []],
        RecordingProducer(),
        {"fetch_interval_s": 0},  # one consume per round (bursts: the next test)
        idle_fetch_backoff_max_ms=20,
    )
    consumer = runner.consumer
    waits: list[float] = []

    def wait(delay: float) -> bool:
        waits.append(delay)
        return False

    runner._stopping.wait = wait
    results = [runner.run_once() for _ in range(5)]
    assert results == [0, 0, 0, 1, 0]
    # after each empty round, not the full one; each resume wakes the fetcher
    assert consumer.paused == ["pause", "resume", "wake"] * 4
    assert waits == [0.005, 0.01, 0.02, 0.005]  # doubles, capped, and starts over after records
    default = runner.config.batch_wait_s
    assert consumer.timeouts == [default, IDLE_PROBE_S, IDLE_PROBE_S, IDLE_PROBE_S, default]


def test_a_round_fetches_in_short_bursts_with_the_assignment_paused_between() -> None:
    """librdkafka refetches as soon as a fetch returns and the local broker answers at
    once: a round that waited for a trickle of records kept the fetcher spinning for all
    of its wait (one consumer following 20 records/s cost noida-db ~0.2 CPU-s/s). Now it
    fetches in bursts of one answer per partition (a record or its end), paused in
    between, and still gathers the round's records into one batch (one flush, one
    commit). Each resume is followed by a wake-up request (librdkafka's resume does not
    wake its fetcher: tests/integration/test_sink_pacing.py)."""
    trickle: list[list[Record]] = [[Record(0, b"a", b"{}")], [EOF], [Record(1, b"b", b"{}")], [EOF]]
    runner = _runner(trickle, RecordingProducer(), {"batch_wait_s": 0.2, "fetch_interval_s": 0.04})
    consumer = runner.consumer
    waits: list[float] = []

    def wait(delay: float) -> bool:
        waits.append(delay)
        time.sleep(delay)  # the round's clock must move on
        return False

    runner._stopping.wait = wait
    assert runner.run_once() == 2  # both records, one round
    assert len(consumer.commits) == 1
    assert all(t <= FETCH_BURST_S for t in consumer.timeouts)
    assert len(consumer.timeouts) <= len(waits) + 1  # one consume per burst: answered at once
    # and paused again while the batch is written (a flush would keep the fetcher spinning)
    assert consumer.paused == ["pause", "resume", "wake"] * len(waits) + ["pause"]
    assert all(0 < w <= 0.04 for w in waits)


def test_a_burst_waits_for_the_partition_to_answer_however_slow_the_broker() -> None:
    """Before: a burst lasted FETCH_BURST_S and the pause after it discarded the fetch
    in flight, so a broker slower than that (noida-db while it saves its state) was
    never heard: the round returned nothing. Now a burst waits for the answer."""
    slow = [[], [], [], [Record(0, b"a", b"{}")]]  # three empty consumes: still fetching
    runner = _runner(slow, RecordingProducer(), {"batch_wait_s": 0.2, "fetch_interval_s": 0.04})
    consumer = runner.consumer

    def wait(delay: float) -> bool:
        time.sleep(delay)
        return False

    runner._stopping.wait = wait
    events: list[str] = []
    poll, pause = consumer.poll, consumer.pause

    def record_poll(timeout: float) -> Record | None:
        events.append("poll")
        return poll(timeout)

    def record_pause(partitions: list[TopicPartition]) -> None:
        events.append("pause")
        pause(partitions)

    consumer.poll, consumer.pause = record_poll, record_pause
    assert runner.run_once() == 1
    assert events[:5] == ["poll"] * 4 + ["pause"]  # no pause before the answer came


def test_an_idle_paced_probe_lasts_one_answer() -> None:
    """While idle, a paced round only looks once: one answer per partition, no fixed wait."""
    runner = _runner([[EOF], [EOF]], RecordingProducer(), {"fetch_interval_s": 0.04})
    runner._stopping.wait = lambda delay: False
    runner.idle.empty_in_a_row = 3
    assert runner.run_once() == 0
    assert runner.consumer.timeouts == [FETCH_BURST_S]
    assert runner.consumer.paused == ["pause", "resume", "wake"]


def test_a_revoke_tells_the_sink_and_leaves_nothing_paused() -> None:
    """The Elasticsearch sink remembers tombstones per product; once its partitions are
    revoked another sink may delete those products, so it must forget them."""
    revoked: list[str] = []
    runner = _runner([], RecordingProducer(), {"on_revoke": lambda: revoked.append("forget")})
    runner._stop_fetching()
    assert runner._paused == [PARTITION]
    runner._revoked(runner.consumer, [PARTITION])
    assert revoked == ["forget"]
    assert runner._paused == []
