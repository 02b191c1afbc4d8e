"""``catstream review``: tail, label and export against the real local Kafka.

The round trip: review items on ``products.review`` → a labeller tails them and
labels (one relabel, one unknown category refused with suggestions, one product
never reviewed) → ``export-labels`` writes a file that training's own reader
(``read_labels``) accepts, with product text joined from the review items.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Producer

from catstream.cli import build_parser
from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from catstream.taxonomy import load_taxonomy
from schemas.events import CategoryScore, ReviewItem
from streams.review_cli import read_topic
from streams.topics import create_topics
from training.labels import read_labels

SHOES = "Apparel & Accessories > Shoes"
SHIRTS = "Apparel & Accessories > Clothing > Shirts & Tops"


def _review_item(product_id: str, title: str) -> ReviewItem:
    return ReviewItem(
        product_id=product_id,
        uncertainty=0.83,
        measure="margin",
        candidates=[
            CategoryScore(id=187, path=SHOES, score=0.41, level=2),
            CategoryScore(id=212, path=SHIRTS, score=0.33, level=3),
        ],
        model_version="7",
        fingerprint=f"fp-{product_id}",
        title=title,
        description=f"{title}, a product a labeller must place",
        brand="Acme",
        raw_category="Mode > Sale",
        image_urls=[f"https://img.example/{product_id}.jpg"],
        url=f"https://shop.example/{product_id}",
    )


def _publish_review_items(settings: Settings, items: list[ReviewItem]) -> None:
    producer = Producer(librdkafka_config(settings))
    for item in items:
        producer.produce(
            settings.topic("review"),
            key=item.product_id.encode(),
            value=item.model_dump_json().encode(),
        )
    assert producer.flush(30) == 0


def _run(settings: Settings, *argv: str) -> int:
    """The real ``catstream`` parser and handler, with this test's settings."""
    args = build_parser(argv).parse_args(argv)
    return int(args.handler(args, settings))


def test_label_and_export_round_trip(
    topic_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = topic_settings
    create_topics(settings)
    _publish_review_items(
        settings,
        [_review_item("p-1", "Trail running shoe"), _review_item("p-2", "Linen shirt")],
    )

    assert (
        _run(settings, "review", "tail", "--from-beginning", "--limit", "2", "--timeout", "30") == 0
    )
    shown = capsys.readouterr().out
    assert "Trail running shoe" in shown
    assert "Linen shirt" in shown
    assert f"1. 0.41  {SHOES}  (id 187)" in shown
    assert 'catstream review label "p-1" 187' in shown

    assert (
        _run(settings, "review", "label", "p-1", "apparel & accessories>shoes", "--labeller", "ann")
        == 0
    )
    assert _run(settings, "review", "label", "p-2", "187", "--labeller", "ann") == 0
    assert _run(settings, "review", "label", "p-2", SHIRTS, "--labeller", "bob") == 0  # relabel
    assert _run(settings, "review", "label", "never-reviewed", SHOES) == 0
    capsys.readouterr()
    assert _run(settings, "review", "label", "p-1", "Apparel & Accessories > Shoos") == 2
    refused = capsys.readouterr().err
    assert "unknown category path" in refused
    assert f"did you mean {SHOES!r}" in refused

    labels = [json.loads(v) for v in read_topic(settings, "labels")]
    assert [(label["product_id"], label["category"]) for label in labels].count(("p-1", SHOES)) == 1
    assert len(labels) == 4  # the refused label was never published

    output = tmp_path / "out" / "labels.jsonl"
    assert _run(settings, "review", "export-labels", "--output", str(output)) == 0
    report = capsys.readouterr()
    assert "wrote 2 labelled products" in report.out
    assert "1 older labels were replaced" in report.out
    assert "left out 1 labels without product text (never-reviewed" in report.err

    taxonomy = load_taxonomy(settings.taxonomy_path)
    exported = {item.product_id: item for item in read_labels(output, taxonomy)}
    assert set(exported) == {"p-1", "p-2"}
    assert taxonomy.path_str(exported["p-1"].category_id) == SHOES
    assert taxonomy.path_str(exported["p-2"].category_id) == SHIRTS  # the latest label wins
    assert exported["p-2"].fields["title"] == "Linen shirt"
    assert exported["p-2"].fields["labeller"] == "bob"
    assert exported["p-1"].fields["image_urls"] == ["https://img.example/p-1.jpg"]


def test_commands_say_what_to_do_when_topics_are_missing(
    topic_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(topic_settings, "review", "export-labels", "--output", str(tmp_path / "x")) == 1
    assert "catstream topics create" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
