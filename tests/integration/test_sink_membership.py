"""A sink that stops cleanly hands its partitions to the other instances at once.

The sinks' consumers are static members (``group.instance.id``). librdkafka sends no
``LeaveGroup`` when a static member closes (KIP-345) and the local broker never times
a session out, so a sink instance that stopped cleanly kept its partitions for good
and nothing consumed them. The check is broker-independent: the hand-over must come
well before the session timeout, when a broker that does time sessions out would
have moved the partitions anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from catstream.settings import Settings
from streams.topics import create_topics
from tests.integration.test_sink_pacing import CountingSink
from workers.sink_runner import SinkRunner, SinkRunnerConfig

PARTITIONS = 4
SESSION_TIMEOUT_S = 10.0  # SinkRunner.consumer_config


def test_a_sink_that_stops_cleanly_hands_its_partitions_over(topic_settings: Settings) -> None:
    settings = topic_settings.model_copy(update={"topic_partitions": PARTITIONS})
    create_topics(settings)
    topic = settings.topic("embeddings")
    runners = [
        SinkRunner(
            CountingSink(),
            settings,
            SinkRunnerConfig(topics=[topic], group_id=f"{settings.app_id}-m", instance_id=slot),
        )
        for slot in ("s0", "s1")
    ]
    threads = [threading.Thread(target=r.run, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    leaving, staying = runners
    try:
        _wait(lambda: all(r.consumer.assignment() for r in runners), 60, "both to own partitions")
        leaving.stop()
        threads[0].join(30)
        assert not threads[0].is_alive(), "the stopped sink did not finish within 30 s"
        stopped = time.monotonic()
        _wait(
            lambda: len(staying.consumer.assignment()) == PARTITIONS,
            SESSION_TIMEOUT_S,
            "the remaining sink to own every partition",
        )
        assert time.monotonic() - stopped < SESSION_TIMEOUT_S / 2
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(30)


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
