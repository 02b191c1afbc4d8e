"""``catstream review tail|label|export-labels|serve``: the labeller's side of active learning.

* ``serve`` runs the review web app (``/review``, with the API), see ``streams.review_server``.

* ``tail`` prints ``products.review`` items for a person: product, title, the top
  candidate categories with their scores, and the command that labels it.
* ``label PRODUCT_ID CATEGORY`` checks CATEGORY (a path ``'A > B > C'`` or a taxonomy
  id) against the taxonomy and publishes a ``Label`` to ``products.labels``, keyed by
  product id. A product labelled again is relabelled: the latest label wins.
* ``export-labels --output labels.jsonl`` writes the JSON-lines file that
  ``catstream train --labels`` reads: product fields + ``category``. Labels carry no
  product text of their own, so each is joined with the product's latest review
  item; a label with neither is left out (and counted), since training on an empty
  product would teach the model nothing but noise.
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from pydantic import ValidationError

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from catstream.taxonomy import TaxonomyError, UnknownCategoryError, load_taxonomy
from schemas.events import Label, ReviewItem

PRODUCT_FIELDS = ("title", "description", "brand", "raw_category", "image_urls")


class ReviewCliError(RuntimeError):
    """A review command cannot go on; the message says what to do."""


def register(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = actions.add_parser("tail", help="print review items for a labeller")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest item")
    tail.add_argument("--limit", type=int, default=0, help="stop after N items (0: forever)")
    tail.add_argument("--timeout", type=float, default=0, help="stop after N idle seconds")
    tail.set_defaults(handler=_tail)
    label = actions.add_parser("label", help="send a product's category to products.labels")
    label.add_argument("product_id", metavar="PRODUCT_ID")
    label.add_argument("category", metavar="CATEGORY", help="path 'A > B > C' or taxonomy id")
    label.add_argument("--labeller", default=None, help="who labels (default: your user name)")
    label.set_defaults(handler=_label)
    export = actions.add_parser("export-labels", help="write labels as JSON lines for training")
    export.add_argument("--output", type=Path, required=True, help="JSON-lines file to write")
    export.set_defaults(handler=_export)
    serve = actions.add_parser("serve", help="serve the review web app (and the API)")
    serve.add_argument("--host", default=None, help="bind address (default: settings.api_host)")
    serve.add_argument("--port", type=int, default=0, help="default: settings.worker_web_port")
    serve.set_defaults(handler=_serve)


# ------------------------------------------------------------------ reading


def _consumer(settings: Settings) -> Consumer:
    # A throwaway group that never commits: reading never moves anyone's offsets.
    group = f"{settings.app_id}-review-cli-{uuid.uuid4().hex[:8]}"
    return Consumer(
        librdkafka_config(
            settings,
            **{"group.id": group, "enable.auto.commit": False, "enable.partition.eof": False},
        )
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=15)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise ReviewCliError(
            f"topic {topic} does not exist; create the topics with `catstream topics create` "
            "(and check CATSTREAM_TOPIC_PREFIX)"
        )
    return sorted(found.partitions)


def read_topic(settings: Settings, key: str, timeout_s: float = 60.0) -> Iterator[bytes]:
    """Every message value in a topic now, oldest first per partition (tombstones skipped).

    Reads up to the end offsets seen at the start, so it finishes on a busy topic.
    """
    topic = settings.topic(key)
    consumer = _consumer(settings)
    try:
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in _partitions(consumer, topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        if not starts:
            return
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise ReviewCliError(
                    f"reading {topic} took over {timeout_s:.0f} s; check Kafka at "
                    f"{settings.kafka_bootstrap} (catstream stack status) and run again"
                )
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ReviewCliError(f"reading {topic}: {error}; check Kafka and run again")
            partition, offset = message.partition() or 0, message.offset() or 0
            if partition in ends and offset + 1 >= ends[partition]:
                del ends[partition]
            value = message.value()
            if value is not None:
                yield value
    finally:
        consumer.close()


# -------------------------------------------------------------------- tail


def format_review_item(item: ReviewItem) -> str:
    """A review item as a few lines a labeller can act on."""
    created = datetime.fromtimestamp(item.created_at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    lines = [
        f"── {item.product_id}   uncertainty {item.uncertainty:.2f} ({item.measure})"
        f"   model {item.model_version}   {created}",
        f"   {item.title or '(no title)'}" + (f"  [{item.brand}]" if item.brand else ""),
    ]
    if item.raw_category:
        lines.append(f"   feed category: {item.raw_category}")
    if item.description:
        text = " ".join(item.description.split())
        lines.append(f"   {text[:160]}{'…' if len(text) > 160 else ''}")
    for rank, candidate in enumerate(item.candidates, start=1):
        lines.append(f"   {rank}. {candidate.score:.2f}  {candidate.path}  (id {candidate.id})")
    lines.extend(f"   image: {url}" for url in item.image_urls[:3])
    if item.url:
        lines.append(f"   url: {item.url}")
    best = item.candidates[0].id if item.candidates else "CATEGORY"
    lines.append(f"   → catstream review label {json.dumps(item.product_id)} {best}")
    return "\n".join(lines)


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    topic = settings.topic("review")
    consumer = _consumer(settings)
    start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous_handler = signal.signal(signal.SIGINT, stop)
    seen, idle = 0, 0.0
    try:
        consumer.assign([TopicPartition(topic, p, start) for p in _partitions(consumer, topic)])
        while not stopping and (args.limit == 0 or seen < args.limit):
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                if args.timeout and idle >= args.timeout:
                    break
                continue
            idle = 0.0
            if message.error() is not None or message.value() is None:
                continue
            try:
                item = ReviewItem.model_validate_json(message.value() or b"")
            except ValidationError as exc:
                print(
                    f"skipped offset {message.offset()}: not a review item ({exc.error_count()}"
                    " errors); see it with `catstream topics tail review`",
                    file=sys.stderr,
                )
                continue
            print(format_review_item(item), flush=True)
            seen += 1
    except ReviewCliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous_handler)  # callers in-process keep their Ctrl-C
        consumer.close()
    return 0


# ------------------------------------------------------------------- label


def resolve_category(settings: Settings, category: str) -> tuple[int, str]:
    """CATEGORY → (id, canonical path); ReviewCliError with suggestions when unknown."""
    try:
        taxonomy = load_taxonomy(settings.taxonomy_path)
    except TaxonomyError as exc:
        raise ReviewCliError(str(exc)) from None
    try:
        category_id = taxonomy.resolve(category)
    except UnknownCategoryError as exc:
        raise ReviewCliError(
            f"{exc}; see `catstream review tail` for candidate ids, or grep {taxonomy.source}"
        ) from None
    return category_id, taxonomy.path_str(category_id)


def publish_label(
    settings: Settings, product_id: str, category: str, labeller: str | None = None
) -> Label:
    """Validate CATEGORY and publish the label, keyed by product id; returns what was sent."""
    if not product_id.strip():
        raise ReviewCliError("PRODUCT_ID is blank; copy it from `catstream review tail`")
    _, path = resolve_category(settings, category)
    label = Label(product_id=product_id, category=path, labeller=labeller or _user())
    producer = Producer(librdkafka_config(settings, **{"enable.idempotence": True}))
    producer.produce(
        settings.topic("labels"), key=product_id.encode(), value=label.model_dump_json().encode()
    )
    if producer.flush(30):
        raise ReviewCliError(
            f"Kafka at {settings.kafka_bootstrap} did not acknowledge the label; check "
            "`catstream stack status` and label again (labelling twice is harmless)"
        )
    return label


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def _label(args: argparse.Namespace, settings: Settings) -> int:
    try:
        label = publish_label(settings, args.product_id, args.category, args.labeller)
    except ReviewCliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"labelled {label.product_id} as {label.category!r} → {settings.topic('labels')}")
    return 0


# ------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportReport:
    written: int
    relabelled: int  # labels replaced by a later label of the same product
    without_fields: list[str]  # product ids left out: no product text anywhere
    unknown_category: list[str]  # product ids left out: category not in this taxonomy


def _latest_labels(settings: Settings) -> tuple[dict[str, Label], int]:
    latest: dict[str, Label] = {}
    replaced = 0
    for value in read_topic(settings, "labels"):
        label = Label.model_validate_json(value)
        previous = latest.get(label.product_id)
        if previous is not None:
            replaced += 1
            if previous.labelled_at > label.labelled_at:
                continue
        latest[label.product_id] = label
    return latest, replaced


def _latest_review_items(settings: Settings, wanted: set[str]) -> dict[str, ReviewItem]:
    latest: dict[str, ReviewItem] = {}
    for value in read_topic(settings, "review"):
        try:
            item = ReviewItem.model_validate_json(value)
        except ValidationError:
            continue  # not ours to judge here; `topics tail review` shows it
        if item.product_id not in wanted:
            continue
        previous = latest.get(item.product_id)
        if previous is None or item.created_at >= previous.created_at:
            latest[item.product_id] = item
    return latest


def label_line(label: Label, item: ReviewItem | None, path: str) -> dict[str, Any] | None:
    """One training line: the label's own product fields, else the review item's."""
    source: Any = label if (label.title or label.description) else item
    if source is None or not (source.title or source.description):
        return None
    line: dict[str, Any] = {"product_id": label.product_id}
    for name in PRODUCT_FIELDS:
        value = getattr(source, name)
        if value not in (None, "", []):
            line[name] = value
    line["category"] = path
    line["labeller"] = label.labeller
    line["labelled_at"] = label.labelled_at
    return line


def export_labels(settings: Settings, output: Path) -> ExportReport:
    labels, replaced = _latest_labels(settings)
    items = _latest_review_items(settings, set(labels))
    taxonomy = load_taxonomy(settings.taxonomy_path)
    without_fields: list[str] = []
    unknown: list[str] = []
    lines: list[dict[str, Any]] = []
    for product_id, label in labels.items():
        if not label.has_category:  # "not a product" / "can't tell": nothing to learn
            continue
        try:
            path = taxonomy.path_str(taxonomy.resolve(label.category))
        except UnknownCategoryError:
            unknown.append(product_id)
            continue
        line = label_line(label, items.get(product_id), path)
        if line is None:
            without_fields.append(product_id)
        else:
            lines.append(line)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    temporary.replace(output)  # a reader never sees half a file
    return ExportReport(len(lines), replaced, without_fields, unknown)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from streams.review_server import serve

    return serve(args, settings)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = export_labels(settings, args.output)
    except (ReviewCliError, TaxonomyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.written} labelled products to {args.output}")
    if report.relabelled:
        print(f"{report.relabelled} older labels were replaced by a later label of the product")
    if report.without_fields:
        shown = ", ".join(report.without_fields[:5])
        print(
            f"left out {len(report.without_fields)} labels without product text ({shown}…): "
            "they were never in products.review, or it expired; label products seen in "
            "`catstream review tail`",
            file=sys.stderr,
        )
    if report.unknown_category:
        shown = ", ".join(report.unknown_category[:5])
        print(
            f"left out {len(report.unknown_category)} labels whose category is not in "
            f"{settings.taxonomy_path} ({shown}…); relabel them with `catstream review label`",
            file=sys.stderr,
        )
    return 0
