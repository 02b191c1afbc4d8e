"""The pipeline bench's prediction watch against the real broker: one ``poll`` sees
every prediction published before it.

Before, ``poll`` resumed its paused consumer, consumed for 20 ms and stopped at the
first empty answer; a resumed consumer's first fetch takes longer than that, so the
bench saw a re-published feed's last prediction ~10 s after it was written and
counted those seconds as the pipeline's.
"""

from __future__ import annotations

from bench.pipeline_bench import PredictionWatch
from catstream.settings import Settings
from streams.topic_records import publish_json
from streams.topics import create_topics


def test_one_poll_reads_every_prediction_published_before_it(topic_settings: Settings) -> None:
    create_topics(topic_settings)
    publish_json(topic_settings, [("before", {"n": 0})], "predictions")
    watch = PredictionWatch(topic_settings)  # starts at the end: "before" is not its
    try:
        events = [(f"p{i}", {"n": i}) for i in range(300)]
        publish_json(topic_settings, events, "predictions")
        watch.poll()
        assert watch.seen == {key for key, _ in events}
        watch.poll()  # nothing new: returns without waiting for anything
        assert len(watch.seen) == len(events)
    finally:
        watch.close()
