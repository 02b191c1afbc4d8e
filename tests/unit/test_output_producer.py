"""``OutputProducer``'s delivery reports reach the agents' futures, and a fatal producer
error stops the process instead of wedging the agent in retries."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from catstream.liveness import LIVENESS
from catstream.settings import Settings
from streams.output_producer import OutputProducer


class ScriptedProducer:
    """librdkafka's produce/poll/flush, answering each record with the next scripted error."""

    def __init__(self, errors: list[KafkaError | None]) -> None:
        self.errors = errors
        self.queued: list[Any] = []
        self.lock = threading.Lock()

    def produce(self, topic: str, value: Any, key: Any, **options: Any) -> None:
        with self.lock:
            self.queued.append(options["on_delivery"])

    def poll(self, timeout: float) -> int:
        with self.lock:
            callbacks, self.queued = self.queued, []
        for callback in callbacks:
            callback(self.errors.pop(0), None)
        if not callbacks:
            time.sleep(min(timeout, 0.01))
        return len(callbacks)

    def flush(self, timeout: float) -> int:
        return 0


def _deliver(errors: list[KafkaError | None]) -> list[BaseException | None]:
    output = OutputProducer(Settings(), producer=ScriptedProducer(list(errors)))

    async def run() -> list[BaseException | None]:
        topic = output.topic("products.normalised")
        deliveries = [await topic.send(key=b"k", value=b"v") for _ in errors]
        results = await asyncio.wait_for(asyncio.gather(*deliveries, return_exceptions=True), 10)
        return [r if isinstance(r, BaseException) else None for r in results]

    try:
        return asyncio.run(run())
    finally:
        output.close()


def test_each_future_completes_with_its_own_delivery_report(stops: list[str]) -> None:
    refused = KafkaError(KafkaError._MSG_TIMED_OUT)
    results = _deliver([None, refused, None])
    assert [type(r) for r in results] == [type(None), KafkaException, type(None)]
    assert stops == []  # a timed-out record is retried by the agent, not fatal


def test_a_fatal_producer_error_stops_the_process(stops: list[str]) -> None:
    # Before: the future failed, the agent retried forever with a producer that
    # refuses every record (an idempotent producer's fatal error is permanent).
    fatal = KafkaError(KafkaError._FATAL, "sequence lost", fatal=True)
    (result,) = _deliver([fatal])
    assert isinstance(result, KafkaException)
    assert stops == ["stop"]
    assert "output_producer" in LIVENESS.stopping


def test_the_librdkafka_producer_is_made_on_the_first_send(monkeypatch: Any) -> None:
    # librdkafka connects as soon as a producer exists: an app built and never started
    # (a unit test, a CLI's --help) must not keep dialling the broker.
    made: list[dict[str, Any]] = []

    def factory(config: dict[str, Any]) -> ScriptedProducer:
        made.append(config)
        return ScriptedProducer([None])

    monkeypatch.setattr("streams.output_producer.Producer", factory)
    output = OutputProducer(Settings())
    topic = output.topic("products.normalised")
    assert made == []

    async def send_one() -> None:
        await (await topic.send(key=b"k", value=b"v"))

    try:
        asyncio.run(asyncio.wait_for(send_one(), 10))
    finally:
        output.close()
    assert len(made) == 1
    OutputProducer(Settings()).close()  # closing an unused producer makes none
    assert len(made) == 1


def test_the_delivery_thread_polls_the_producer_the_records_went_to(monkeypatch: Any) -> None:
    # Suite run: the delivery thread and the loop each made a producer on first use; the
    # records went to one, the thread polled the other, and when the first was dropped
    # (250 records in its queue) their futures never completed and the agent waited for
    # good. A slow constructor makes that interleaving all but certain on the old code.
    made: list[ScriptedProducer] = []

    def slow_factory(config: dict[str, Any]) -> ScriptedProducer:
        time.sleep(0.2)
        made.append(ScriptedProducer([None] * 3))
        return made[-1]

    monkeypatch.setattr("streams.output_producer.Producer", slow_factory)
    output = OutputProducer(Settings())
    topic = output.topic("products.normalised")

    async def send_three() -> None:
        deliveries = [await topic.send(key=b"k", value=b"v") for _ in range(3)]
        await asyncio.gather(*deliveries)

    try:
        asyncio.run(asyncio.wait_for(send_three(), 10))
    finally:
        output.close()
    assert len(made) == 1
