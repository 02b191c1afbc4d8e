"""``catstream demo``: the foundation flow on the local stack, with a readable summary.

1. bring the local stack up (idempotent: a running stack is reused);
2. create the product topics (idempotent);
3. round-trip one ``products.raw`` event through Kafka: produce it, read it back
   at the offset the broker acknowledged, and validate it against the schema;
4. embed a few product titles through the Triton text encoder and show how
   close they are to each other.

The stack is left running (``catstream stack down`` stops it). Later issues
grow this into the whole job: generate a feed, bootstrap a model from rules,
run the worker, publish, and print predictions and similar products.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings, get_settings, load_settings
from deploy.stack import Stack, StackError
from deploy.stack_cli import format_table
from schemas.events import RawProduct
from streams.topics import create_topics
from streams.triton_client import TritonClient, TritonError

DEMO_TITLES = (
    "Women's red leather crossbody handbag",
    "Ladies leather shoulder bag, burgundy",
    "Stainless steel saucepan with glass lid, 20 cm",
)


class DemoError(Exception):
    """A step failed; the message says what to do."""


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the Kafka round trip"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    try:
        settings = _stack_up(settings)
        _create_topics(settings)
        _round_trip(settings, args.timeout)
        _embed(settings, DEMO_TITLES)
    except (DemoError, StackError) as exc:
        print(f"\ncatstream demo failed: {exc}", file=sys.stderr)
        return 1
    _section("done")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    print(f"the stack keeps running under {settings.home}: `catstream stack status` shows it,")
    print("`catstream stack down` (or `make stack-down`) stops it.")
    return 0


def _section(title: str) -> None:
    print(f"\n== {title} {'=' * max(0, 66 - len(title))}")


def _stack_up(settings: Settings) -> Settings:
    """Start (or reuse) the stack and return settings that point at it."""
    _section("1. local stack")
    stack = Stack(settings.home, settings=settings)
    print(f"starting the local stack under {stack.home} (Triton may take a minute) ...")
    report = stack.up()
    if report.already_running:
        print("already up and healthy: reusing it")
    else:
        print(f"up in {report.seconds:.1f} s; URLs written to {stack.env_file}")
    print(format_table(report.services))
    # The stack may have chosen new ports: its URLs win over what this process read at start.
    for name, value in stack.settings_env().items():
        os.environ[name] = value
    get_settings.cache_clear()
    return load_settings(home=stack.home)


def _create_topics(settings: Settings) -> None:
    _section("2. topics")
    try:
        outcomes = create_topics(settings)
    except RuntimeError as exc:
        raise DemoError(str(exc)) from exc
    for topic, outcome in outcomes.items():
        print(f"  {topic:32s} {outcome} ({settings.topic_partitions} partitions)")


def _round_trip(settings: Settings, timeout_s: float) -> None:
    """Produce one raw product, read it back at its acknowledged offset, validate it."""
    _section("3. Kafka round trip")
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


def _embed(settings: Settings, titles: Sequence[str]) -> None:
    _section("4. Triton text encoder")

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
