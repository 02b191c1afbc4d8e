"""Normaliser throughput, in process (``pytest -m bench``; skipped by default).

Generates a messy feed, maps it to RawProducts once, then times
``normalise_product`` + ``fingerprint`` alone, so the number is the pure
normalisation cost per product on this machine, without Kafka or JSON.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from catstream.settings import load_settings
from feeds.formats import FeedRow, read_feed
from feeds.generator import GenerateOptions, generate_feed
from feeds.mapping import load_mapping
from normaliser import fingerprint, normalise_product
from schemas.events import RawProduct

PRODUCTS = 20_000


@pytest.mark.bench
def test_normaliser_throughput(tmp_path: Path) -> None:
    settings = load_settings()
    out = io.BytesIO()
    options = GenerateOptions(
        products=PRODUCTS,
        network="generic",
        seed=5,
        fmt="jsonl",
        taxonomy_path=settings.taxonomy_path,
    )
    generate_feed(options, out)
    path = tmp_path / "feed.jsonl"
    path.write_bytes(out.getvalue())
    mapping = load_mapping("generic")
    raws = [
        RawProduct.model_validate(mapping.map_row(r.fields))
        for r in read_feed(path)
        if isinstance(r, FeedRow)
    ]
    started = time.perf_counter()
    for raw in raws:
        fingerprint(normalise_product(raw), settings.categorisation_fields)
    rate = len(raws) / (time.perf_counter() - started)
    print(f"\nnormalise_product + fingerprint: {rate:.0f} products/s over {len(raws)} products")
    assert rate > 200  # a floor that catches an accidental quadratic, not a target
