"""The whole streaming path on the real local stack (issue: the streaming path).

A generated feed (5% corrupt rows, images from a loopback server) goes through
a real ``catstream worker --sinks --api``: normalise → Triton inference →
predictions, embeddings, review → Milvus and Elasticsearch. The tests compare
every product with every output: one current prediction per valid product,
the same products in Milvus and Elasticsearch, deletes gone from both, review
within budget, corrupt rows dead-lettered, and nothing lost when the worker is
killed, restarted, or Triton goes away for 20 seconds.
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from catstream.settings import Settings
from deploy.demo_images import ImageServer
from deploy.stack import Stack
from feeds.publisher import publish_feed
from streams.app import faust_group_id
from streams.topic_records import latest_by_key, publish_json
from streams.topics import create_topics
from tests.conftest import RunningStack
from tests.integration.chaos_run import f32le
from tests.integration.running_worker import (
    WorkerProcess,
    partition_owners,
    read_topic,
    wait_until,
)
from tests.integration.streaming_fixtures import (
    publish_sentinels,
    sentinels_through,
    train_categoriser,
    write_feed,
)
from workers.elasticsearch_index import elasticsearch_client
from workers.milvus_collection import connect, count_rows

REVIEW_BUDGET = 40


@pytest.fixture(scope="module")
def categoriser(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    train_categoriser(stack, tmp_path_factory.mktemp("categoriser"))
    return stack


@pytest.fixture
def settings(topic_settings: Settings, categoriser: Settings) -> Settings:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return topic_settings.model_copy(
        update={
            "image_allow_private": True,  # the test images are served on loopback
            "review_budget_per_window": REVIEW_BUDGET,
            "review_window_s": 3600.0,
            "worker_web_port": port,
        }
    )


@pytest.fixture
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


def _current_products(settings: Settings) -> set[str]:
    """Products whose latest normalised event is not a delete."""
    latest = latest_by_key(read_topic(settings, "normalised", idle_s=2))
    return {pid for pid, event in latest.items() if event and event["op"] != "delete"}


def _elasticsearch_ids(settings: Settings) -> set[str]:
    client = elasticsearch_client(settings)
    client.indices.refresh(index=settings.elasticsearch_index)
    hits = client.search(index=settings.elasticsearch_index, size=10_000, source=False)
    ids = [hit["_id"] for hit in hits["hits"]["hits"]]
    assert len(ids) == len(set(ids))
    return set(ids)


def _milvus_count(settings: Settings) -> int:
    client = connect(settings)
    # The sink creates the collection with its first write: until then nothing has landed.
    # (A Triton outage at the start delays that write; the first full run with the sinks in
    # processes of their own counted before it and failed with "collection does not exist".)
    if not client.has_collection(settings.milvus_collection):
        return 0
    return count_rows(client, settings.milvus_collection)


def _run_feed(
    settings: Settings, tmp_path: Path, images: ImageServer, products: int, seed: int
) -> int:
    feed = tmp_path / "feed.jsonl"
    write_feed(settings, feed, products, seed, images.base_url)
    report = publish_feed(feed, "generic", settings, progress=False)
    assert report.failed == 0
    return report.sent


def _wait_until_everything_landed(settings: Settings, timeout_s: float = 600) -> set[str]:
    wait_until(lambda: sentinels_through(settings), timeout_s, "the sentinels' predictions")
    current = _current_products(settings)

    def sinks_caught_up() -> bool:
        return _milvus_count(settings) == len(current) and _elasticsearch_ids(settings) == current

    wait_until(sinks_caught_up, 300, f"{len(current)} products in Milvus and Elasticsearch")
    return current


def _assert_one_current_prediction_each(settings: Settings, current: set[str]) -> None:
    latest = latest_by_key(read_topic(settings, "predictions", idle_s=2))
    missing = current - {pid for pid, value in latest.items() if value is not None}
    assert not missing, f"{len(missing)} products have no current prediction: {sorted(missing)[:5]}"
    deleted_but_predicted = {pid for pid, v in latest.items() if v is not None} - current
    assert not deleted_but_predicted
    for pid in current:
        prediction = latest[pid]
        ids = [c["id"] for c in prediction["categories"]]
        levels = [c["level"] for c in prediction["categories"]]
        assert levels == list(range(1, len(ids) + 1))  # root to leaf, no gaps
        scores = [c["score"] for c in prediction["categories"]]
        assert scores == sorted(scores, reverse=True)  # a parent scores at least its child


def test_feed_flows_to_predictions_milvus_and_elasticsearch(
    settings: Settings, tmp_path: Path, images: ImageServer
) -> None:
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", "--sinks", "--api").start()
    try:
        sent = _run_feed(settings, tmp_path, images, 2000, seed=5)
        publish_sentinels(settings)
        before_deletes = _wait_until_everything_landed(settings)
        deleted = sorted(p for p in before_deletes if not p.startswith("sentinel"))[:25]
        publish_json(settings, [(pid, {"product_id": pid, "op": "delete"}) for pid in deleted])
        publish_json(settings, [(pid, None) for pid in deleted[:5]])  # tombstones too
        publish_sentinels(settings)
        current = _wait_until_everything_landed(settings)

        assert current == before_deletes - set(deleted)
        _assert_one_current_prediction_each(settings, current)
        assert _milvus_count(settings) == len(current)
        assert _elasticsearch_ids(settings) == current

        dead = read_topic(settings, "deadletter", idle_s=2)
        assert len(dead) >= 0.02 * sent
        assert all(d.value["reason"] for d in dead)

        review = read_topic(settings, "review", idle_s=2)
        assert 0 < len(review) <= REVIEW_BUDGET
        assert {r.key for r in review} <= before_deletes
        assert all(len(r.value["candidates"]) <= 5 for r in review)

        embeddings = latest_by_key(read_topic(settings, "embeddings", idle_s=2))
        with_image = [e for e in embeddings.values() if e and e["image_embedding"]]
        assert with_image, "no product got an image embedding from the loopback server"
        # The wire layout, decoded without catstream (base64 + little-endian float32).
        text, image = (
            f32le(with_image[0]["text_embedding"]),
            f32le(with_image[0]["image_embedding"]),
        )
        assert (len(text), len(image)) == (384, 1280)
        assert abs(sum(v * v for v in text) - 1.0) < 1e-3  # MiniLM vectors are unit length
        health = json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{settings.worker_web_port}/health")
        )
        assert health["status"] == "ready"
    finally:
        worker.stop()
    assert worker.process is not None
    assert worker.process.returncode is not None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_restarts_lose_nothing_and_duplicate_nothing_in_the_stores(
    settings: Settings, tmp_path: Path, images: ImageServer, sig: int
) -> None:
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", "--sinks").start()
    try:
        _run_feed(settings, tmp_path, images, 600, seed=9)
        for _ in range(3 if sig == signal.SIGTERM else 1):
            time.sleep(8)
            worker.stop(sig)
            worker.start()
        publish_sentinels(settings)
        current = _wait_until_everything_landed(settings)
        _assert_one_current_prediction_each(settings, current)
    finally:
        worker.stop()


@pytest.mark.timeout(300, func_only=True)  # a guard: a stall fails a wait below first
def test_workers_joining_and_leaving_one_group_lose_nothing_and_duplicate_nothing(
    settings: Settings, tmp_path: Path, images: ImageServer
) -> None:
    """Scale-out: two worker processes in one consumer group over 8 partitions, each its
    own static member, the sinks as processes of their own. A second worker joins
    mid-stream, takes partitions and gets work on them; then the first one leaves with
    work in flight and the second takes every partition. Every product lands once.

    Before streams.static_membership the first worker, a static member, sent no
    LeaveGroup when it stopped; the local broker never times a session out, so its
    partitions stayed assigned to it and the stream stopped for good."""
    settings = settings.model_copy(update={"topic_partitions": 8})
    create_topics(settings)
    group, raw = faust_group_id(settings, runs_agents=True), settings.topic("raw")

    def owners() -> dict[str, set[int]]:
        return {
            instance.removeprefix(f"{group}-"): partitions
            for instance, partitions in partition_owners(settings, group, raw).items()
            if partitions
        }

    sinks = [
        WorkerProcess(settings, tmp_path / f"{name}.log", name, command="sink").start()
        for name in ("milvus", "elasticsearch")
    ]
    first = WorkerProcess(settings, tmp_path / "w0.log", "--instance-id", "w0").start()
    second = WorkerProcess(settings, tmp_path / "w1.log", "--instance-id", "w1")
    try:
        _run_feed(settings, tmp_path, images, 160, seed=21)
        wait_until(lambda: len(read_topic(settings, "predictions", idle_s=1)) >= 20, 120, "w0")
        second.start()  # joins: partitions move to it mid-stream
        wait_until(lambda: owners().keys() == {"w0", "w1"}, 120, "w0 and w1 to share the input")
        _run_feed(settings, tmp_path, images, 80, seed=22)  # work for both (updates, too)
        assert first.stop() == 0, first.log_tail()  # leaves, with that work in flight
        wait_until(lambda: owners() == {"w1": set(range(8))}, 60, "w1 to own every partition")
        publish_sentinels(settings)
        current = _wait_until_everything_landed(settings, timeout_s=120)
        _assert_one_current_prediction_each(settings, current)
        assert second.alive(), second.log_tail()
    finally:
        for process in (first, second, *sinks):
            if process.alive():
                process.stop()


def test_triton_outage_delays_but_loses_nothing(
    settings: Settings, local_stack: RunningStack, tmp_path: Path, images: ImageServer
) -> None:
    stack: Stack = local_stack.stack
    create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log", "--sinks", "--api").start()
    health_url = f"http://127.0.0.1:{settings.worker_web_port}/health"
    try:
        wait_until(lambda: _health(health_url) == "ready", 120, "the worker's API to be ready")
        _run_feed(settings, tmp_path, images, 400, seed=13)
        stack.stop_service("triton")
        try:
            wait_until(lambda: _health(health_url) == "degraded", 60, "health to say degraded")
            time.sleep(20)
        finally:
            stack.start_service("triton")
        publish_sentinels(settings)
        current = _wait_until_everything_landed(settings)
        _assert_one_current_prediction_each(settings, current)
        wait_until(lambda: _health(health_url) == "ready", 120, "health to be ready again")
    finally:
        worker.stop()


def test_one_product_pipeline_request_per_batch_gives_images_and_predictions(
    settings: Settings, tmp_path: Path, images: ImageServer
) -> None:
    """The worker with CATSTREAM_PRODUCT_PIPELINE_MODEL set: every batch's images are
    encoded on the server, and not one batch fell back to the direct calls."""
    piped = settings.model_copy(update={"product_pipeline_model": "product_pipeline"})
    requests_before = _pipeline_requests(piped)
    create_topics(piped)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(piped, log, "--sinks").start()
    try:
        _run_feed(piped, tmp_path, images, 200, seed=17)
        publish_sentinels(piped)
        current = _wait_until_everything_landed(piped)
        _assert_one_current_prediction_each(piped, current)
        embeddings = latest_by_key(read_topic(piped, "embeddings", idle_s=2))
        with_image = [e for e in embeddings.values() if e and e["image_embedding"]]
        assert len(f32le(with_image[0]["image_embedding"])) == 1280
        predictions = latest_by_key(read_topic(piped, "predictions", idle_s=2))
        assert any(p and p["image_failed"] for p in predictions.values())  # the 404s and HTML
    finally:
        worker.stop()
    assert "product_pipeline_failed" not in log.read_text()
    assert _pipeline_requests(piped) > requests_before


def _pipeline_requests(settings: Settings) -> int:
    """Successful product_pipeline requests Triton has answered (its statistics API)."""
    url = f"{settings.triton_http_url}/v2/models/product_pipeline/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        stats = json.load(response)["model_stats"]
    return sum(int(s["inference_stats"]["success"]["count"]) for s in stats)


def _health(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(json.load(response)["status"])
    except urllib.error.HTTPError as error:
        return str(json.load(error)["status"])
    except OSError:
        return "unreachable"
