"""The agents' outputs through librdkafka: sends cost microseconds, delivery is awaited per batch.

Faust's ``Topic.send`` builds a ``PendingMessage``, a ``FutureMessage``, runs the
sensors and hands each record to aiokafka, whose accumulator, produce-request
encoding and compression run in Python on the event loop: in the normalise
benchmark (session 6) that was ~0.6 ms of the worker's ~2.5 ms CPU per event
(the output, the ``product-state`` changelog record, and the sender). librdkafka
does all of it in its own C threads, off the interpreter lock.

``OutputProducer.topic(name)`` has the same ``send`` as a Faust topic as the
agents use it (``await topic.send(key=, value=)`` → a future of the delivery), so
the agents keep confirming a batch's outputs before acking its events: a failed
delivery raises in the future and the agent sends again. Delivery reports are
served by one thread (``poll``), which hands each poll's reports to the event
loop in one call, not one wake-up per record.

Records are partitioned like Faust's producer does (aiokafka's default: Java's
murmur2 of the key), so a product's events land on the same partition as before.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from catstream.kafka_config import librdkafka_config
from catstream.liveness import LIVENESS
from catstream.logs import get_logger
from catstream.settings import Settings

log = get_logger(__name__)

_POLL_S = 0.5  # idle wake-ups of the delivery thread: two a second
# How long a record may wait for delivery (librdkafka retries within it) before its
# future fails and the agent sends it again.
_MESSAGE_TIMEOUT_MS = 30_000


def output_producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings of the agents' producer, from the agents' producer settings."""
    return librdkafka_config(
        settings,
        **{
            "client.id": f"catstream-{settings.app_id}-{settings.worker_instance_id}",
            "linger.ms": settings.producer_linger_ms,
            "batch.size": settings.producer_batch_bytes,
            "compression.type": settings.producer_compression,
            "message.max.bytes": max(
                settings.max_message_bytes * 2, settings.producer_max_request_bytes
            ),
            # Same partition for a key as aiokafka's DefaultPartitioner (murmur2).
            "partitioner": "murmur2_random",
            # Retries keep each partition's order and write no duplicates.
            "enable.idempotence": True,
            "message.timeout.ms": _MESSAGE_TIMEOUT_MS,
        },
    )


class OutputProducer:
    """One librdkafka producer for an agent process, with a delivery thread."""

    def __init__(self, settings: Settings, producer: Any = None) -> None:
        self._settings = settings
        self._producer = producer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Filled by the delivery thread, emptied on the loop: deque appends and pops are
        # atomic, so no report is lost between the two threads.
        self._reports: deque[tuple[asyncio.Future[None], Any]] = deque()

    @property
    def producer(self) -> Any:
        # Made on first use: librdkafka connects as soon as a producer exists, so an app
        # that is built but never started (a CLI's --help, a unit test) opens no sockets.
        if self._producer is None:
            self._producer = Producer(output_producer_config(self._settings))
        return self._producer

    def topic(self, name: str) -> OutputTopic:
        return OutputTopic(self, name)

    def send_now(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[None]:
        """Queue one record; the future completes when Kafka acknowledged it (or failed)."""
        loop = self._started()
        delivered: asyncio.Future[None] = loop.create_future()
        reports = self._reports

        def on_delivery(error: Any, _message: Any) -> None:
            reports.append((delivered, error))  # the delivery thread; resolved on the loop

        options: dict[str, Any] = {"on_delivery": on_delivery}
        if partition is not None:
            options["partition"] = partition
        try:
            self.producer.produce(topic, value, key, **options)
        except BufferError:
            # librdkafka's local queue is full: let the broker catch up, then once more.
            self.producer.flush(1.0)
            try:
                self.producer.produce(topic, value, key, **options)
            except BufferError as exc:
                delivered.set_exception(KafkaException(KafkaError(KafkaError._QUEUE_FULL)))
                log.warning("output_queue_full", topic=topic, error=str(exc))
        except KafkaException as exc:  # refused locally (e.g. too large): like a failed delivery
            delivered.set_exception(exc)
        return delivered

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the delivery thread and wait up to ``timeout_s`` for queued records."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._producer is None:
            return  # nothing was ever sent
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("outputs_not_delivered_at_close", records=remaining)

    def _started(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            # The producer is made here, before the delivery thread exists, and the thread
            # polls that one. When both threads made it on first use, each could make its
            # own: the loop produced on one, the thread polled the other, and when the
            # first was dropped its records' futures never completed. The agent waited on
            # them for good (a suite run: 250 records lost with the dropped producer).
            producer = self.producer
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._poll_forever, args=(producer,), name="output-deliveries", daemon=True
            )
            self._thread.start()
        return self._loop

    def _poll_forever(self, producer: Any) -> None:
        while not self._stopping.is_set():
            producer.poll(_POLL_S)
            if self._reports and self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self._deliver_reports)
                except RuntimeError:  # the loop closed meanwhile
                    return

    def _deliver_reports(self) -> None:
        reports = self._reports
        while reports:
            delivered, error = reports.popleft()
            if delivered.done():
                continue
            if error is None:
                delivered.set_result(None)
                continue
            delivered.set_exception(KafkaException(error))
            if error.fatal():
                # An idempotent producer that lost its sequence (e.g. the broker lost its
                # state) refuses every later record: retrying would wedge the agent. A
                # restarted process has a new producer and handles the unacked events.
                LIVENESS.stop_process(
                    "output_producer",
                    f"the agents' Kafka producer failed fatally ({error.str()}); "
                    "the process restarts with a new producer",
                )


@dataclass
class OutputTopic:
    """A topic of an ``OutputProducer``, sent to like the agents send to a Faust topic."""

    producer: OutputProducer
    name: str

    async def send(self, *, key: bytes | None, value: bytes | None) -> asyncio.Future[None]:
        return self.producer.send_now(self.name, key, value)
