"""``catstream deadletter list | replay``: inspect dead letters, send them back after a fix.

Replay re-publishes each dead letter's original bytes, with its original key,
to the topic it came from (``products.raw`` unless it failed later), so the
fixed worker processes it like any other event. It reads with its own consumer
group and commits a partition's offset only past letters whose re-published
message Kafka acknowledged: a letter that ``--reason`` leaves out (or that
cannot be replayed because it was cut) stops the commit there, so later runs
still see it. Letters after it may then be replayed again by a later run;
that is harmless, every stage is idempotent per product and version.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

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


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter and where it is in the dead-letter topic."""

    partition: int
    offset: int
    letter: DeadLetter


def read_stored_letters(settings: Settings, consumer: Consumer) -> list[StoredLetter]:
    """Every dead letter ``consumer`` has not read yet (reads until the topic is idle)."""
    consumer.subscribe([settings.topic("deadletter")])
    letters: list[StoredLetter] = []
    idle = 0
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
        letter = DeadLetter.model_validate_json(message.value() or b"{}")
        letters.append(StoredLetter(message.partition() or 0, message.offset() or 0, letter))
    return letters


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        librdkafka_config(
            settings,
            **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )


def read_dead_letters(settings: Settings, group: str) -> list[DeadLetter]:
    """All dead letters not yet committed by ``group``; commits nothing."""
    consumer = _consumer(settings, group)
    try:
        return [stored.letter for stored in read_stored_letters(settings, consumer)]
    finally:
        consumer.close()


def matches(letter: DeadLetter, reason: str | None) -> bool:
    if not reason:
        return True
    needle = reason.lower()
    return needle in letter.error_class.lower() or needle in letter.reason.lower()


def committable(letters: list[StoredLetter], done: set[tuple[int, int]]) -> list[TopicPartition]:
    """Per partition, the offset after the run of letters from the start that are all done."""
    by_partition: dict[int, list[StoredLetter]] = {}
    for stored in letters:
        by_partition.setdefault(stored.partition, []).append(stored)
    offsets = []
    for partition, stored_letters in by_partition.items():
        next_offset = None
        for stored in sorted(stored_letters, key=lambda s: s.offset):
            if (stored.partition, stored.offset) not in done:
                break
            next_offset = stored.offset + 1
        if next_offset is not None:
            offsets.append(TopicPartition("", partition, next_offset))
    return offsets


def replay_dead_letters(
    settings: Settings, reason: str | None = None, to: str | None = None, dry_run: bool = False
) -> int:
    """Re-publish matching dead letters; returns how many Kafka acknowledged."""
    consumer = _consumer(settings, f"{settings.app_id}-deadletter-replay")
    try:
        letters = read_stored_letters(settings, consumer)
        chosen = [s for s in letters if matches(s.letter, reason)]
        cut = [s for s in chosen if s.letter.original_truncated]
        if cut:
            print(
                f"{len(cut)} matching dead letters hold only the start of their message (it "
                "was over the dead-letter size limit) and cannot be replayed; re-send those "
                "products from the feed (their original_sha256 identifies them)"
            )
        chosen = [s for s in chosen if not s.letter.original_truncated]
        if dry_run or not chosen:
            return len(chosen)
        acknowledged, failures = _republish(settings, chosen, to)
        offsets = committable(letters, acknowledged)
        if offsets:
            topic = settings.topic("deadletter")
            consumer.commit(
                offsets=[TopicPartition(topic, tp.partition, tp.offset) for tp in offsets],
                asynchronous=False,
            )
    finally:
        consumer.close()
    if failures:
        raise RuntimeError(
            f"{len(failures)} replayed messages were not acknowledged by Kafka ({failures[0]}); "
            "they stay in the dead-letter topic: check the broker (catstream stack status) "
            "and replay again"
        )
    return len(acknowledged)


def _republish(
    settings: Settings, chosen: list[StoredLetter], to: str | None
) -> tuple[set[tuple[int, int]], list[str]]:
    """Produce each letter's original; (positions Kafka acknowledged, failure texts)."""
    producer = Producer(librdkafka_config(settings, **{"enable.idempotence": True}))
    acknowledged: set[tuple[int, int]] = set()
    failures: list[str] = []

    def on_delivery(position: tuple[int, int]) -> Any:
        def report(error: Any, _message: Any) -> None:
            if error is None:
                acknowledged.add(position)
            else:
                failures.append(str(error))

        return report

    for stored in chosen:
        letter = stored.letter
        producer.produce(
            to or letter.source_topic,
            key=base64.b64decode(letter.key_b64) if letter.key_b64 else None,
            value=base64.b64decode(letter.original_b64),
            on_delivery=on_delivery((stored.partition, stored.offset)),
        )
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining:
        failures.append(f"{remaining} not acknowledged within 30 s")
    return acknowledged, failures


def _list(args: argparse.Namespace, settings: Settings) -> int:
    letters = read_dead_letters(settings, f"catstream-deadletter-list-{id(args)}")
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
