"""Shared set-up for the streaming-path tests: a trained categoriser, a feed, a worker.

The categoriser is trained once per session through the real ``catstream
train`` command on generated ground truth and loaded into the session's Triton.
"""

from __future__ import annotations

from pathlib import Path

from catstream.settings import Settings
from feeds.generator import GenerateOptions, generate_feed
from streams.topic_records import publish_json, read_topic
from training.generated import train_on_generated

SENTINELS = [f"sentinel-{i}" for i in range(32)]  # enough keys to land on every partition


def train_categoriser(settings: Settings, workdir: Path, products: int = 800) -> None:
    """Train a small categoriser on generated ground truth and load it into Triton."""
    train_on_generated(settings, workdir, products, epochs=8)


def write_feed(
    settings: Settings, path: Path, products: int, seed: int, image_base_url: str | None
) -> None:
    options = GenerateOptions(
        products=products,
        network="generic",
        seed=seed,
        fmt="jsonl",
        corrupt_fraction=0.05,
        image_base_url=image_base_url,
        taxonomy_path=settings.taxonomy_path,
    )
    with path.open("wb") as out:
        generate_feed(options, out)


def publish_sentinels(settings: Settings) -> None:
    publish_json(settings, [(key, {"product_id": key, "title": "sentinel"}) for key in SENTINELS])


def sentinels_through(settings: Settings, topic_key: str = "predictions") -> bool:
    keys = {r.key for r in read_topic(settings, topic_key, idle_s=2)}
    return keys.issuperset(SENTINELS)
