"""Keeps a ``ReviewState`` up to date from Kafka, in a thread of its own.

A confluent-kafka consumer in a throwaway group (never committing, so it moves no
one's offsets) reads ``products.review``, ``.labels``, ``.predictions`` and
``.models`` from their beginning, then follows them. A restarted API therefore
rebuilds the same queue; leases are in SQLite (``workers.review_leases``). A record
that does not validate is skipped and counted: it is the writer's dead letter to
deal with, not the review app's. Labels the app itself publishes are applied at
once too, so the queue never shows an answered item while the record travels.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError
from pydantic import BaseModel, ValidationError

from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.settings import Settings
from schemas.events import Label, ModelDecision, Prediction, ReviewItem
from workers.review_state import ReviewState

log = get_logger(__name__)

TOPICS: dict[str, type[BaseModel]] = {
    "review": ReviewItem,
    "labels": Label,
    "predictions": Prediction,
    "models": ModelDecision,
}


class ReviewFeed:
    def __init__(self, settings: Settings, state: ReviewState) -> None:
        self.settings = settings
        self.state = state
        self.lock = threading.Lock()
        self.skipped = 0
        self.records = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._by_topic = {settings.topic(key): key for key in TOPICS}
        self._apply: dict[str, Callable[[Any], None]] = {
            "review": state.add_item,
            "labels": state.add_label,
            "predictions": state.add_prediction,
            "models": state.add_decision,
        }

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="review-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def apply(self, key: str, event: BaseModel) -> None:
        with self.lock:
            self._apply[key](event)

    def _run(self) -> None:
        consumer = Consumer(
            librdkafka_config(
                self.settings,
                **{
                    "group.id": f"{self.settings.app_id}-review-app-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "topic.metadata.refresh.interval.ms": 5000,
                },
            )
        )
        try:
            consumer.subscribe(list(self._by_topic))
            while not self._stop.is_set():
                messages = consumer.consume(500, timeout=0.5)
                for message in messages:
                    self._handle(message)
        except Exception as exc:  # the page says the queue is stale; the log says why
            log.error("review_feed_died", error=str(exc), exc_info=exc)
            raise
        finally:
            consumer.close()

    def _handle(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                log.warning("review_feed_error", error=str(error))
            return
        value = message.value()
        key = self._by_topic.get(message.topic() or "")
        if value is None or key is None:
            return
        try:
            event = TOPICS[key].model_validate_json(value)
        except ValidationError:
            self.skipped += 1
            return
        with self.lock:
            self._apply[key](event)
            self.records += 1

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
