"""Chaos: kills and outages while a feed with updates and deletes streams (issue 8).

The stream worker (agents) and the sinks run as separate real ``catstream
worker`` processes. While a feed streams, at seeded random moments: SIGKILL the
worker three times and the sinks process twice (each sink is killed twice),
and stop Triton, Milvus and Elasticsearch (noida-db's API, Kafka staying up) for
20 s each. Afterwards Milvus and Elasticsearch must hold every product's latest
version (``updated_at``, fingerprint, vector), no deleted or duplicated product,
and every raw event newer than its predecessors must have a normalised output.

The small run is in ``make test``; the large one (20,000 products, 10 worker
kills) shares the code and is marked ``soak``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from catstream.settings import Settings
from streams.topics import create_topics
from tests.conftest import RunningStack
from tests.integration.chaos_run import (
    Chaos,
    PacedFeed,
    Pipeline,
    chaos_feed,
    check_final_state,
    expected_state,
    wait_settled,
)
from tests.integration.pipeline_checks import ensure_categoriser


@pytest.fixture
def settings(topic_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    ensure_categoriser(topic_settings, tmp_path_factory.mktemp("categoriser"))
    return topic_settings


def run_chaos(
    settings: Settings,
    local_stack: RunningStack,
    tmp_path: Path,
    *,
    products: int,
    worker_kills: int,
    sink_kills: int,
    rate: float,
    seed: int,
    settle_s: float,
    gap_s: tuple[float, float] = (3.0, 12.0),
) -> None:
    started = time.monotonic()
    prefix = f"c{random.Random(seed).getrandbits(24):x}"
    events = chaos_feed(prefix, products, seed)
    alive, deleted = expected_state(events)
    create_topics(settings)
    pipeline = Pipeline(settings, tmp_path / "logs").start()
    chaos = Chaos(
        pipeline,
        local_stack.stack,
        worker_kills=worker_kills,
        sink_kills=sink_kills,
        gap_s=gap_s,
        seed=seed,
    )
    feed = PacedFeed(settings, events, rate)
    try:
        feed.start()
        chaos.run()
        feed.join(timeout=900)
        assert not feed.is_alive(), "the feed did not finish publishing"
        assert not feed.errors, f"the feed could not publish: {feed.errors[:3]}"
        settled = wait_settled(pipeline, settings, alive, settle_s)
        failures = check_final_state(settings, events)
    finally:
        pipeline.stop()
    took = time.monotonic() - started
    print(
        f"chaos: {len(events)} events, {len(alive)} current, {len(deleted)} deleted, "
        f"{took:.0f}s; actions {chaos.done}; unexpected exits {pipeline.unexpected_exits}"
    )
    if not settled:
        failures.insert(0, f"the stores did not settle within {settle_s:.0f}s")
    assert not failures, "\n".join(failures) + "\n" + pipeline.log_tails()


@pytest.mark.timeout(1200)
def test_kills_and_outages_lose_nothing_and_keep_the_latest_version(
    settings: Settings, local_stack: RunningStack, tmp_path: Path
) -> None:
    run_chaos(
        settings,
        local_stack,
        tmp_path,
        products=3000,
        worker_kills=3,
        sink_kills=2,
        rate=40.0,
        seed=31,
        settle_s=300,
    )


@pytest.mark.soak
@pytest.mark.timeout(7200)
def test_large_chaos_twenty_thousand_products_ten_kills(
    settings: Settings, local_stack: RunningStack, tmp_path: Path
) -> None:
    run_chaos(
        settings,
        local_stack,
        tmp_path,
        products=20_000,
        worker_kills=10,
        sink_kills=4,
        rate=60.0,
        seed=47,
        settle_s=1800,
        gap_s=(10.0, 40.0),  # spread 17 actions over the ~8-minute feed
    )
