"""Which topics a run's cleanup deletes: its own, never the shared ones."""

from __future__ import annotations

import pytest

from catstream.settings import Settings
from workers.run_data import SharedTopicsError, run_topics

TOPICS = [
    "products.raw",
    "catstream-product-state-changelog",
    "t1.products.raw",
    "t1.products.embeddings",
    "app1-product-state-changelog",
    "app10-product-state-changelog",
    "t10.products.raw",
]


def test_a_run_owns_its_prefixed_topics_and_its_apps_changelogs_only() -> None:
    settings = Settings(topic_prefix="t1.", app_id="app1")
    assert run_topics(settings, TOPICS) == [
        "t1.products.raw",
        "t1.products.embeddings",
        "app1-product-state-changelog",
    ]


def test_settings_without_a_prefix_name_the_shared_topics_and_are_refused() -> None:
    with pytest.raises(SharedTopicsError, match="CATSTREAM_TOPIC_PREFIX"):
        run_topics(Settings(topic_prefix="", app_id="catstream"), TOPICS)
