"""A re-published identical feed publishes nothing downstream (issue 10, session 5).

A real ``catstream worker --sinks`` categorises a small feed. The same feed is then
published again with only a newer ``updated_at``: the normalise agent judges every
product identical, so no new normalised, prediction or embedding event appears and
Milvus and Elasticsearch keep exactly what they held. A price-only change published
after it still reaches Elasticsearch (the unchanged path: prediction carried
forward), and an update older than the identical re-delivery is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from catstream.settings import Settings
from streams.topic_records import publish_json
from streams.topics import create_topics
from tests.integration.pipeline_checks import (
    elasticsearch_docs,
    ensure_categoriser,
    milvus_rows,
    total_lag,
    wait_for,
)
from tests.integration.running_worker import WorkerProcess, read_topic

PRODUCTS = 30
T1 = 1_700_000_000_000
TITLES = ["Wooden train set", "Plush teddy bear", "Kids bicycle helmet", "Jigsaw puzzle"]


def _product(i: int, updated_at: int, **changes: Any) -> dict[str, Any]:
    return {
        "product_id": f"p{i}",
        "title": f"{TITLES[i % len(TITLES)]} {i}",
        "brand": "Acme",
        "raw_category": "Toys",
        "price": "9.99",
        "currency": "GBP",
        "url": f"https://shop.example/p{i}",
        "extra": {"stock": 3},
        "updated_at": updated_at,
        **changes,
    }


def _feed(updated_at: int) -> list[tuple[str, dict[str, Any] | None]]:
    return [(f"p{i}", _product(i, updated_at)) for i in range(PRODUCTS)]


def _counts(settings: Settings) -> dict[str, int]:
    return {
        key: len(read_topic(settings, key, idle_s=1))
        for key in ("normalised", "predictions", "embeddings")
    }


def _settled(settings: Settings, check: Any = lambda: True) -> None:
    """Every group (worker, both sinks) committed everything, and ``check`` holds."""
    assert wait_for(lambda: total_lag(settings) == 0 and check(), 300, every_s=1), (
        f"not settled: lag {total_lag(settings)}"
    )


@pytest.fixture
def settings(topic_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    ensure_categoriser(topic_settings, tmp_path_factory.mktemp("categoriser"))
    return topic_settings


def test_an_identical_refeed_publishes_nothing_and_a_price_change_still_lands(
    settings: Settings, tmp_path: Path
) -> None:
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", "--sinks").start()
    try:
        publish_json(settings, _feed(T1))
        _settled(
            settings,
            lambda: (
                len(elasticsearch_docs(settings)) == PRODUCTS
                and len(milvus_rows(settings)) == PRODUCTS
                and all("prediction" in d for d in elasticsearch_docs(settings).values())
            ),
        )
        before = _counts(settings)
        assert before == {"normalised": PRODUCTS, "predictions": PRODUCTS, "embeddings": PRODUCTS}
        docs_before, rows_before = elasticsearch_docs(settings), milvus_rows(settings)

        # The same feed, re-stamped: every product identical.
        publish_json(settings, _feed(T1 + 1_000))
        _settled(settings)
        assert _counts(settings) == before
        # Older than the identical re-delivery: stale, although newer than what the stores hold.
        publish_json(settings, [("p1", _product(1, T1 + 500, title="Old"))])
        # A price-only change: published (unchanged), its prediction carried forward.
        publish_json(settings, [("p0", _product(0, T1 + 2_000, price="8.49"))])

        def p0_repriced() -> bool:
            doc = elasticsearch_docs(settings).get("p0", {})
            return doc.get("price") == "8.49" and doc.get("prediction", {}).get("updated_at") == (
                T1 + 2_000
            )

        _settled(settings, p0_repriced)
        after = _counts(settings)
        assert after == {
            "normalised": PRODUCTS + 1,
            "predictions": PRODUCTS + 1,
            "embeddings": PRODUCTS,  # a carried-forward prediction has no new vectors
        }
        docs, rows = elasticsearch_docs(settings), milvus_rows(settings)
        assert set(docs) == set(docs_before)
        for pid, doc in docs.items():
            if pid != "p0":
                assert doc == docs_before[pid], pid  # untouched, "Old" title included
        p0 = docs["p0"]
        assert p0["updated_at"] == T1 + 2_000
        assert p0["prediction"]["carried_forward"] is True
        assert p0["category"] == docs_before["p0"]["category"]
        assert rows == rows_before
        assert worker.alive(), worker.log_tail()
    finally:
        worker.stop()
