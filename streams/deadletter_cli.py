"""``catstream deadletter list | replay``: inspect dead letters, send them back after a fix.

Replay re-publishes each dead letter's original bytes, with its original key,
to the topic it came from (``products.raw`` unless it failed later), so the
fixed worker processes it like any other event. It reads with its own consumer
group and commits after each replayed batch, so a second replay does not send
the same dead letters again.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from schemas.events import DeadLetter


def register(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="count dead letters by error class and stage")
    listing.set_defaults(handler=_list)
    replay = actions.add_parser("replay", help="re-publish dead letters to their source topic")
    replay.add_argument("--reason", help="only dead letters whose error class or reason contains R")
    replay.add_argument("--to", help="publish to this topic instead of the source topic")
    replay.add_argument("--dry-run", action="store_true", help="count what would be replayed")
    replay.set_defaults(handler=_replay)


def read_dead_letters(settings: Settings, group: str, commit: bool) -> list[DeadLetter]:
    """All dead letters not yet read by ``group`` (reads until the topic is idle)."""
    consumer = Consumer(
        librdkafka_config(
            settings,
            **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    consumer.subscribe([settings.topic("deadletter")])
    letters: list[DeadLetter] = []
    idle = 0
    try:
        while idle < 6:
            message = consumer.poll(0.5)
            if message is None:
                idle += 1
                continue
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {settings.topic('deadletter')}: {error}")
                continue
            idle = 0
            letters.append(DeadLetter.model_validate_json(message.value() or b"{}"))
        if commit and letters:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return letters


def matches(letter: DeadLetter, reason: str | None) -> bool:
    if not reason:
        return True
    needle = reason.lower()
    return needle in letter.error_class.lower() or needle in letter.reason.lower()


def replay_dead_letters(
    settings: Settings, reason: str | None = None, to: str | None = None, dry_run: bool = False
) -> int:
    """Re-publish matching dead letters; returns how many were sent."""
    letters = read_dead_letters(
        settings, f"{settings.app_id}-deadletter-replay", commit=not dry_run
    )
    chosen = [letter for letter in letters if matches(letter, reason)]
    if dry_run or not chosen:
        return len(chosen)
    producer = Producer(librdkafka_config(settings, **{"enable.idempotence": True}))
    for letter in chosen:
        producer.produce(
            to or letter.source_topic,
            key=base64.b64decode(letter.key_b64) if letter.key_b64 else None,
            value=base64.b64decode(letter.original_b64),
        )
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(
            f"{remaining} replayed messages were not acknowledged by Kafka; "
            "check the broker (catstream stack status) and replay again"
        )
    return len(chosen)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    letters = read_dead_letters(settings, f"catstream-deadletter-list-{id(args)}", commit=False)
    counts = Counter((letter.stage, letter.error_class) for letter in letters)
    for (stage, error_class), count in counts.most_common():
        example = next(
            letter
            for letter in letters
            if letter.stage == stage and letter.error_class == error_class
        )
        print(
            json.dumps(
                {
                    "stage": stage,
                    "error_class": error_class,
                    "count": count,
                    "example_reason": example.reason,
                }
            )
        )
    print(f"{len(letters)} dead letters in {settings.topic('deadletter')}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    sent = replay_dead_letters(settings, args.reason, args.to, args.dry_run)
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {sent} dead letters")
    return 0
