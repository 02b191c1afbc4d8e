"""Soak: 30 minutes at half the maximum rate, RSS sampled every minute (issue 8).

The stream worker and the sinks run as separate ``catstream worker``
processes (as in deploy/production) over a fixed catalogue that is updated,
deleted and re-created for the whole run, so the state a correct worker keeps
is bounded. First the maximum rate is measured (a burst, timed until every
consumer group reached the end of its partitions); then the feed runs at half
of it. Every process's RSS (the two workers and the stack's services, with
their children) is sampled each minute; after the warm-up each grows less
than 10%. The curve is written to ``rss-curve.json`` and ``rss-curve.csv`` in
the test's tmp dir and printed, with the consumer lag at each sample.

The local broker (noida-db) keeps every retained record in memory, so with
Kafka's default retention its RSS is the size of the log: in the first full
run it grew +289% (96 MiB to 2.5 GiB, most of it ``products.embeddings``)
while catstream's own processes stayed flat. A production broker pages its log
to disk; here the flow topics are created with a size-bounded retention
(``FLOW_RETENTION_BYTES`` per partition, far more than the lag ever reaches)
so that the broker's RSS measures the broker, not the feed's volume.

``CATSTREAM_SOAK_MINUTES``, ``CATSTREAM_SOAK_SAMPLE_S`` and ``CATSTREAM_SOAK_BURST``
shorten a run (for trying the test out; the issue's numbers are the defaults).
"""

from __future__ import annotations

import csv
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from streams.topics import create_topics
from tests.conftest import RunningStack
from tests.integration.chaos_run import FeedEvent, PacedFeed, Pipeline, _upsert
from tests.integration.pipeline_checks import (
    ensure_categoriser,
    lagging_partitions,
    process_tree,
    rss_bytes,
    total_lag,
    wait_for,
)

SOAK_MINUTES = float(os.environ.get("CATSTREAM_SOAK_MINUTES", "30"))
SAMPLE_S = float(os.environ.get("CATSTREAM_SOAK_SAMPLE_S", "60"))
WARMUP_FRACTION = 1 / 6  # the first 5 of 30 minutes
MAX_GROWTH = 0.10
CATALOGUE = 2000
BURST = int(os.environ.get("CATSTREAM_SOAK_BURST", "1500"))
SEED = 61
FLOW_TOPICS = ("raw", "normalised", "predictions", "embeddings")
FLOW_RETENTION_BYTES = 64 * 2**20


@pytest.fixture
def settings(topic_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    ensure_categoriser(topic_settings, tmp_path_factory.mktemp("categoriser"))
    return topic_settings


class CatalogueFeed(threading.Thread):
    """Updates, deletes and re-creates of a fixed catalogue at ``rate``/s until stopped."""

    def __init__(self, settings: Settings, prefix: str, rate: float) -> None:
        super().__init__(name="catalogue-feed", daemon=True)
        self.settings, self.prefix, self.rate = settings, prefix, rate
        self.stopping = threading.Event()
        self.base = int(time.time() * 1000) - 30 * 86_400_000  # never "in the future"
        self.next_seq = 0  # updated_at = base + seq: every event is newer than the last

    def events(self, count: int) -> list[FeedEvent]:
        start, self.next_seq = self.next_seq, self.next_seq + count
        rng = random.Random(SEED + start)
        base = self.base
        out = []
        for seq in range(start, start + count):
            product_id = f"{self.prefix}-{rng.randrange(CATALOGUE)}"
            if rng.random() < 0.1:
                payload = {"product_id": product_id, "op": "delete", "updated_at": base + seq}
                out.append(FeedEvent(product_id, "delete", base + seq, payload))
            else:
                out.append(_upsert(product_id, rng, base + seq))
        return out

    def run(self) -> None:
        chunk = max(1, int(self.rate * 30))  # 30 seconds of events per paced chunk
        while not self.stopping.is_set():
            PacedFeed(self.settings, self.events(chunk), self.rate).run()  # in this thread


def _create_bounded_flow_topics(settings: Settings) -> None:
    """The flow topics with size-bounded retention (see the module docstring); then the rest."""
    admin = AdminClient(librdkafka_config(settings))
    config = {"retention.bytes": str(FLOW_RETENTION_BYTES), "segment.bytes": str(2**20)}
    wanted = [
        NewTopic(
            settings.topic(key),
            settings.topic_partitions,
            settings.topic_replication,
            config=config,
        )
        for key in FLOW_TOPICS
    ]
    for future in admin.create_topics(wanted, request_timeout=30).values():
        future.result(timeout=30)
    create_topics(settings)


def _sample(
    settings: Settings, pipeline: Pipeline, stack: RunningStack, began: float
) -> dict[str, Any]:
    sample: dict[str, Any] = {"t_s": round(time.monotonic() - began), "lag": total_lag(settings)}
    for name, process in pipeline.processes().items():
        pid = process.process.pid if process.process else 0
        sample[name] = sum(rss_bytes(p) for p in process_tree(pid)) if pid else 0
    for service in stack.stack.status():
        if service.pid:
            sample[service.name] = sum(rss_bytes(p) for p in process_tree(service.pid))
    return sample


def _measure_max_rate(settings: Settings, pipeline: Pipeline, feed: CatalogueFeed) -> float:
    burst = PacedFeed(settings, feed.events(BURST), rate=1e6)
    began = time.monotonic()
    burst.run()
    assert wait_for(lambda: not lagging_partitions(settings), 900, every_s=2), (
        f"the burst was not processed in 900 s: {lagging_partitions(settings)}\n"
        + pipeline.log_tails()
    )
    return BURST / (time.monotonic() - began)


@pytest.mark.soak
@pytest.mark.timeout(int(SOAK_MINUTES * 60 + 3600))
def test_rss_stays_flat_at_half_the_maximum_rate(
    settings: Settings, local_stack: RunningStack, tmp_path: Path
) -> None:
    _create_bounded_flow_topics(settings)
    pipeline = Pipeline(settings, tmp_path / "logs").start()
    feed = CatalogueFeed(settings, f"s{random.Random(SEED).getrandbits(24):x}", rate=1.0)
    samples: list[dict[str, Any]] = []
    try:
        # Warm the pipeline up (models loaded, topics assigned) before timing the burst.
        PacedFeed(settings, feed.events(200), rate=1e6).run()
        assert wait_for(lambda: not lagging_partitions(settings), 600, every_s=2), (
            f"the warm-up was not processed in 600 s: {lagging_partitions(settings)}\n"
            + pipeline.log_tails()
        )
        max_rate = _measure_max_rate(settings, pipeline, feed)
        feed.rate = max_rate / 2
        print(f"soak: maximum rate {max_rate:.1f}/s, running at {feed.rate:.1f}/s")
        began = time.monotonic()
        feed.start()
        end = began + SOAK_MINUTES * 60
        while True:
            pipeline.supervise()
            samples.append(_sample(settings, pipeline, local_stack, began))
            if time.monotonic() >= end:
                break
            time.sleep(min(SAMPLE_S, max(0.0, end - time.monotonic())))
        feed.stopping.set()
        feed.join(timeout=120)
        kept_up = wait_for(lambda: not lagging_partitions(settings), 600, every_s=5)
    finally:
        feed.stopping.set()
        pipeline.stop()
    growth = _write_curve(samples, tmp_path)
    assert not pipeline.unexpected_exits, f"processes exited: {pipeline.unexpected_exits}"
    assert kept_up, "the pipeline did not catch up after the soak at half its maximum rate"
    grown = {name: g for name, g in growth.items() if g >= MAX_GROWTH}
    assert not grown, f"RSS grew {grown} after the warm-up (limit {MAX_GROWTH:.0%})"


def _write_curve(samples: list[dict[str, Any]], tmp_path: Path) -> dict[str, float]:
    """Write and print the curve; returns each process's growth after the warm-up."""
    names = sorted({k for s in samples for k in s if k not in ("t_s", "lag")})
    (tmp_path / "rss-curve.json").write_text(json.dumps(samples, indent=1))
    with (tmp_path / "rss-curve.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["t_s", "lag", *names])
        writer.writeheader()
        writer.writerows(samples)
    print(f"RSS curve (MiB), also in {tmp_path / 'rss-curve.csv'}:")
    print("t_s\tlag\t" + "\t".join(names))
    for s in samples:
        print(
            f"{s['t_s']}\t{s.get('lag', '')}\t"
            + "\t".join(f"{s.get(n, 0) / 2**20:.0f}" for n in names)
        )
    warm = [s for s in samples if s["t_s"] >= SOAK_MINUTES * 60 * WARMUP_FRACTION]
    growth: dict[str, float] = {}
    if len(warm) < 2:
        return growth
    for name in names:
        values = [s.get(name, 0) for s in warm]
        baseline = statistics.median(values[:3])
        final = statistics.median(values[-3:])
        growth[name] = final / baseline - 1 if baseline else 0.0
    print("growth after warm-up: " + ", ".join(f"{n} {g:+.1%}" for n, g in growth.items()))
    return growth
