"""``catstream topics create | tail NAME``."""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
from typing import Any

from confluent_kafka import Consumer, KafkaError

from catstream.kafka_config import librdkafka_config
from catstream.settings import TOPIC_KEYS, Settings
from streams.topics import create_topics


def register(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create all topics (idempotent)")
    create.set_defaults(handler=_create)
    tail = actions.add_parser("tail", help="print a topic's messages as JSON")
    tail.add_argument("topic", help=f"full topic name or one of: {', '.join(TOPIC_KEYS)}")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    tail.add_argument("--limit", type=int, default=0, help="stop after N messages (0: forever)")
    tail.add_argument("--timeout", type=float, default=0, help="stop after N idle seconds")
    tail.set_defaults(handler=_tail)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    for topic, outcome in create_topics(settings).items():
        print(f"{topic:40s} {outcome}")
    return 0


def _resolve(settings: Settings, topic: str) -> str:
    return settings.topic(topic) if topic in TOPIC_KEYS else topic


def render(key: bytes | None, value: bytes | None, meta: dict[str, Any]) -> str:
    """One message as a line of JSON a person can read; binary stays visible as base64."""
    record: dict[str, Any] = dict(meta)
    record["key"] = key.decode("utf-8", "replace") if key is not None else None
    if value is None:
        record["value"] = None  # tombstone
    else:
        try:
            record["value"] = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            record["value_b64"] = base64.b64encode(value).decode("ascii")
    return json.dumps(record, ensure_ascii=False)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    topic = _resolve(settings, args.topic)
    consumer = Consumer(
        librdkafka_config(
            settings,
            **{
                "group.id": f"catstream-tail-{topic}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            },
        )
    )
    consumer.subscribe([topic])
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    seen, idle = 0, 0.0
    try:
        while not stopping and (args.limit == 0 or seen < args.limit):
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                if args.timeout and idle >= args.timeout:
                    break
                continue
            idle = 0.0
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    print(f"error: {error}", file=sys.stderr)
                continue
            meta = {"partition": message.partition(), "offset": message.offset()}
            print(render(message.key(), message.value(), meta), flush=True)
            seen += 1
    finally:
        consumer.close()
    return 0
