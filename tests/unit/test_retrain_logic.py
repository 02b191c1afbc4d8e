"""catstream retrain's pure parts: the holdout split and --every durations."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from schemas.events import CategoryScore, Label, ReviewItem
from training.retrain import file_lines, split_labels
from training.retrain_cli import parse_duration

PETS = "Animals & Pet Supplies"


def test_random_sample_labels_are_the_holdout_and_verdicts_are_left_out() -> None:
    taxonomy = Taxonomy.load(Settings().taxonomy_path)
    sampled = ReviewItem(
        product_id="b",
        uncertainty=0.1,
        measure="margin",
        candidates=[CategoryScore(id=1, path=PETS, score=0.9, level=1)],
        model_version="1",
        fingerprint="f",
        title="dog bed",
        random_sample=True,
    )
    labels = {
        "a": Label(product_id="a", category=PETS, title="cat toy"),
        "b": Label(product_id="b", category=PETS),  # text and holdout flag from its item
        "c": Label(product_id="c", category=PETS, title="x", random_sample=True),
        "d": Label(product_id="d", category="", verdict="not_a_product", title="gift card"),
        "e": Label(product_id="e", category="No > Such > Path", title="y"),
        "f": Label(product_id="f", category=PETS),  # no product text anywhere
    }
    data = split_labels(labels, {"b": sampled}, taxonomy)
    assert [line["product_id"] for line in data.training] == ["a"]
    assert sorted(line["product_id"] for line in data.holdout) == ["b", "c"]
    assert data.left_out == 3


def test_labelled_files_never_feed_holdout_products_to_training(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"product_id": "h", "title": "t"}\n\n{"product_id": "k", "title": "t"}\n')
    assert [line["product_id"] for line in file_lines([path], {"h"})] == ["k"]


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("6h") == 6 * 3600
    assert parse_duration("1.5d") == 1.5 * 86400
    for bad in ("", "6", "h", "-1h", "0m", "1w"):
        with pytest.raises(argparse.ArgumentTypeError, match="duration"):
            parse_duration(bad)
