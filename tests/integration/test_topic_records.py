"""Reading whole topics (``streams.topic_records``) against the real broker."""

from __future__ import annotations

from catstream.settings import Settings
from streams.topic_records import latest_by_key, publish_json, read_topic
from streams.topics import create_topics


def test_read_topic_reads_to_the_end_however_short_the_idle_time(
    topic_settings: Settings,
) -> None:
    """Once it stopped after ``idle_s`` without a record, also before the first fetch."""
    create_topics(topic_settings)
    events = [(f"p{i}", {"n": i}) for i in range(200)] + [("p0", None)]
    publish_json(topic_settings, events, "normalised")
    records = read_topic(topic_settings, "normalised", idle_s=0)
    assert len(records) == len(events)
    latest = latest_by_key(records)
    assert latest["p0"] is None
    assert latest["p199"] == {"n": 199}


def test_read_topic_of_an_empty_topic_returns_at_once_with_nothing(
    topic_settings: Settings,
) -> None:
    create_topics(topic_settings)
    assert read_topic(topic_settings, "review", idle_s=0) == []
