"""The sink runner's error path on in-memory Kafka: nothing is committed before its
dead letters are delivered, and no record can kill the sink."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

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
class Consumer:
    batches: list[list[Record]]
    commits: list[list[tuple[int, int]]] = field(default_factory=list)
    on_empty: Any = None  # called when the batches run out (stops a run() loop)
    timeouts: list[float] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)  # "pause" / "resume", in order

    def subscribe(self, topics: list[str]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Record]:
        self.timeouts.append(timeout)
        if not self.batches and self.on_empty is not None:
            self.on_empty()
        return self.batches.pop(0) if self.batches else []

    def assignment(self) -> list[str]:
        return ["products.embeddings[0]"]

    def pause(self, partitions: list[str]) -> None:
        self.paused.append("pause")

    def resume(self, partitions: list[str]) -> None:
        self.paused.append("resume")

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


@pytest.fixture(autouse=True)
def stops() -> Iterator[list[str]]:
    calls: list[str] = []
    terminate = LIVENESS.terminate
    LIVENESS.terminate = lambda: calls.append("stop")
    yield calls
    LIVENESS.terminate = terminate
    LIVENESS.reset()


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
    assert consumer.paused == ["pause", "resume"] * 4  # after each empty round, not the full one
    assert waits == [0.005, 0.01, 0.02, 0.005]  # doubles, capped, and starts over after records
    default = runner.config.batch_wait_s
    assert consumer.timeouts == [default, IDLE_PROBE_S, IDLE_PROBE_S, IDLE_PROBE_S, default]


def test_a_round_fetches_in_short_bursts_with_the_assignment_paused_between() -> None:
    """librdkafka refetches as soon as a fetch returns and the local broker answers at
    once: a round that waited for a trickle of records kept the fetcher spinning for all
    of its wait (one consumer following 20 records/s cost noida-db ~0.2 CPU-s/s). Now it
    fetches in bursts of FETCH_BURST_S, paused in between, and still gathers the round's
    records into one batch (one flush, one commit)."""
    trickle = [[Record(0, b"a", b"{}")], [], [Record(1, b"b", b"{}")], []]
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
    assert 2 <= len(consumer.timeouts) <= 6
    fetching = sum(consumer.timeouts)
    assert fetching <= 0.3 * runner.config.batch_wait_s  # the fetcher ran a fraction of it
    assert consumer.paused == ["pause", "resume"] * len(waits)
    assert all(0 < w <= 0.04 for w in waits)
