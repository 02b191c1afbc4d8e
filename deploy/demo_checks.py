"""Foundation checks the demo runs first: a Kafka round trip and Triton embeddings.

Each proves one service answers its real protocol before the whole flow runs,
so a broken stack fails with a precise message instead of a stuck worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from schemas.events import RawProduct
from triton_models.triton_client import TritonClient, TritonError

DEMO_TITLES = (
    "Women's red leather crossbody handbag",
    "Ladies leather shoulder bag, burgundy",
    "Stainless steel saucepan with glass lid, 20 cm",
)


class DemoError(Exception):
    """A step failed; the message says what to do."""


def section(title: str) -> None:
    print(f"\n== {title} {'=' * max(0, 66 - len(title))}")


def round_trip(settings: Settings, timeout_s: float = 30.0) -> None:
    """Produce one raw product, read it back at its acknowledged offset, validate it."""
    topic = settings.topic("raw")
    event = RawProduct(
        product_id=f"demo-{uuid.uuid4().hex[:12]}",
        updated_at=datetime.now(UTC).isoformat(),
        network="demo",
        merchant="Demo Store",
        title=DEMO_TITLES[0],
        raw_category="Apparel & Accessories > Handbags",
        price="£49.99",
        extra={"source": "catstream demo"},
    )
    payload = event.model_dump_json().encode()
    started = time.perf_counter()
    partition, offset = _produce(settings, topic, event.product_id, payload, timeout_s)
    produced_ms = (time.perf_counter() - started) * 1000
    message = _read_at(settings, topic, partition, offset, timeout_s)
    total_ms = (time.perf_counter() - started) * 1000
    value = message.value()
    if value != payload or message.key() != event.product_id.encode():
        raise DemoError(
            f"{topic}[{partition}]@{offset} holds a different message than the one produced; "
            "is another process writing with the same key? Run the demo again."
        )
    echoed = RawProduct.model_validate_json(value)
    print(f"  produced {event.product_id} to {topic}[{partition}] at offset {offset}")
    print(f"  acknowledged in {produced_ms:.0f} ms, read back and validated in {total_ms:.0f} ms")
    print(f"  title={echoed.title!r} price={echoed.price!r} ({len(payload)} bytes)")


def _produce(
    settings: Settings, topic: str, key: str, payload: bytes, timeout_s: float
) -> tuple[int, int]:
    producer = Producer(librdkafka_config(settings, **{"enable.idempotence": True}))
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)
        else:
            delivered.append(message)

    producer.produce(topic, key=key.encode(), value=payload, on_delivery=on_delivery)
    producer.flush(timeout_s)
    if errors:
        raise DemoError(
            f"Kafka rejected the demo event: {errors[0]}; check `catstream stack status`"
        )
    if not delivered:
        raise DemoError(
            f"no delivery report from Kafka at {settings.kafka_bootstrap} within "
            f"{timeout_s:.0f} s; check `catstream stack status` and .catstream/logs/noida.log"
        )
    partition, offset = delivered[0].partition(), delivered[0].offset()
    if partition is None or offset is None:  # set on every delivered message
        raise DemoError(f"Kafka acknowledged the demo event without a position: {delivered[0]}")
    return partition, offset


def _read_at(
    settings: Settings, topic: str, partition: int, offset: int, timeout_s: float
) -> Message:
    consumer = Consumer(
        librdkafka_config(
            settings,
            **{"group.id": f"catstream-demo-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False},
        )
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise DemoError(f"reading {topic} failed: {message.error()}")
            return message
    finally:
        consumer.close()
    raise DemoError(
        f"the demo event did not come back from {topic} within {timeout_s:.0f} s; "
        "check .catstream/logs/noida.log"
    )


def embed_titles(settings: Settings, titles: Sequence[str] = DEMO_TITLES) -> None:

    async def embed() -> npt.NDArray[np.float32]:
        async with TritonClient.from_settings(settings) as client:
            return await client.embed_texts(list(titles))

    started = time.perf_counter()
    try:
        vectors = asyncio.run(embed())
    except TritonError as exc:
        raise DemoError(str(exc)) from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(
        f"  {len(titles)} titles embedded by {settings.text_encoder_model!r} at "
        f"{settings.triton_grpc_url} in {elapsed_ms:.0f} ms ({vectors.shape[1]}-d, L2-normalised)"
    )
    similarity = vectors @ vectors.T  # cosine: the vectors have unit length
    for i in range(1, len(titles)):
        print(f"  cosine {similarity[0, i]:+.3f}  {titles[0]!r} vs {titles[i]!r}")
