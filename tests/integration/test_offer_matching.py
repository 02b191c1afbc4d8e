"""Same product across merchants, on the real local stack: offer groups, re-feeds, deletes, /offers.

A real ``catstream worker --agents match --sinks --api`` consumes normalised
products and their embeddings (real MiniLM vectors, as Triton's text_encoder
makes them) from real Kafka; the Milvus sink writes the vectors, the matching
agent finds candidates in Milvus and Elasticsearch, scores them with a pair
model trained here by ``catstream train-matcher`` on pairs of *other* products,
and publishes groups on ``products.matches``; the Elasticsearch sink writes
``offer_group`` into the product documents.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from catstream.cli import main as catstream_main
from catstream.settings import Settings
from schemas.events import NormalisedProduct, ProductEmbedding
from schemas.vectors import encode_vector
from streams.app import faust_group_id
from streams.topic_records import latest_by_key, publish_json, read_topic
from streams.topics import create_topics
from tests.integration.offer_feed import catalogue, large_catalogue, offers, training_pairs
from tests.integration.running_worker import WorkerProcess, partition_owners, wait_until
from triton_models.categoriser.encoder import shared_encoder
from triton_models.categoriser.model_control import triton_model_state
from triton_models.matcher.client import TritonPairModel
from triton_models.matcher.pair_model import load_version, version_dirs
from triton_models.matcher.records import embedding_sentence, record_from_fields
from workers.elasticsearch_index import elasticsearch_client
from workers.offer_index import offer_index


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def matcher_repository(tmp_path_factory: pytest.TempPathFactory, stack: Settings) -> Path:
    """The stack's model repository, with a matcher version trained on other products'
    pairs and loaded into the stack's Triton (``train-matcher`` loads what it trains)."""
    root = tmp_path_factory.mktemp("matcher")
    train, valid = training_pairs(root / "pairs")
    repository = Path(stack.model_repository)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CATSTREAM_MODEL_REPOSITORY", str(repository))
        from catstream.settings import get_settings

        get_settings.cache_clear()
        try:
            code = catstream_main(
                ["train-matcher", "--pairs", str(train), "--valid", str(valid), "--quiet"]
            )
        finally:
            get_settings.cache_clear()
    assert code == 0
    version = max(version_dirs(repository))
    assert (repository / "matcher" / str(version) / "model.py").is_file()
    assert triton_model_state(stack, name="matcher").get(version) == "READY"
    return repository


def test_triton_scores_pairs_as_the_model_does_in_process(
    stack: Settings, matcher_repository: Path
) -> None:
    """The served matcher (Triton's python backend) gives the in-process scores, bit for bit."""
    rows = offers(catalogue())
    records = [record_from_fields(r["fields"], product_id=r["product_id"]) for r in rows]
    vectors = shared_encoder().encode([embedding_sentence(r) for r in records])
    records = [
        dataclasses.replace(r, text_vector=tuple(float(x) for x in v))
        for r, v in zip(records, vectors, strict=True)
    ]
    pairs = [(records[0], other) for other in records[1:]]
    pairs += [(records[3], other) for other in records if other is not records[3]]
    served = TritonPairModel(stack.model_copy(update={"model_repository": matcher_repository}))
    try:
        version = max(version_dirs(matcher_repository))
        assert served.version == version
        in_process = load_version(matcher_repository / "matcher" / str(version))
        assert served.threshold == in_process.threshold
        assert np.array_equal(served.score_pairs(pairs), in_process.score_pairs(pairs))
    finally:
        served.close()


@pytest.fixture
def worker(
    topic_settings: Settings, matcher_repository: Path, tmp_path: Path
) -> Iterator[tuple[Settings, WorkerProcess]]:
    settings = topic_settings.model_copy(
        update={
            "model_repository": matcher_repository,
            "worker_web_port": _free_port(),
            "match_vector_wait_s": 30.0,
        }
    )
    create_topics(settings)
    process = WorkerProcess(
        settings, tmp_path / "worker.log", "--agents", "match", "--sinks", "--api"
    ).start()
    try:
        yield settings, process
    finally:
        code = process.stop()
        if code not in (0, -15):
            print(process.log_tail(80))


def _publish(settings: Settings, rows: list[dict[str, Any]]) -> None:
    """Each row as its normalised product, then its embedding (as infer would publish it)."""
    records = [record_from_fields(r["fields"], product_id=r["product_id"]) for r in rows]
    vectors = shared_encoder().encode([embedding_sentence(r) for r in records])
    normalised, embeddings = [], []
    for row, vector in zip(rows, vectors, strict=True):
        fields = {k: v for k, v in row["fields"].items() if v is not None}
        fingerprint = f"fp-{abs(hash(fields['title'])):x}"
        product = NormalisedProduct(product_id=row["product_id"], fingerprint=fingerprint, **fields)
        normalised.append((row["product_id"], json.loads(product.model_dump_json())))
        embedding = ProductEmbedding(
            product_id=row["product_id"],
            model_version="test",
            text_embedding=encode_vector(vector),
            category_ids=[row["cat_l1"]],
            category_path=["test"],
            fingerprint=fingerprint,
            updated_at=fields.get("updated_at"),
        )
        embeddings.append((row["product_id"], json.loads(embedding.model_dump_json())))
    publish_json(settings, normalised, "normalised")
    publish_json(settings, embeddings, "embeddings")


def _groups(settings: Settings) -> dict[str, Any]:
    return latest_by_key(read_topic(settings, "matches", idle_s=1))


def _settled(settings: Settings, expected: dict[str, set[str]]) -> bool:
    """Every product's latest group lists exactly ``expected[product]``."""
    latest = _groups(settings)
    return all(
        latest.get(pid) is not None and set(latest[pid]["members"]) == members
        for pid, members in expected.items()
    )


def _expected(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    by_family: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_family[row["family"]].add(row["product_id"])
    return {row["product_id"]: by_family[row["family"]] for row in rows}


def _offers(settings: Settings, product_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{settings.worker_web_port}/products/{product_id}/offers"
    with urllib.request.urlopen(url, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def test_merchants_offers_group_variants_stay_apart_refeed_and_delete(
    worker: tuple[Settings, WorkerProcess],
) -> None:
    settings, process = worker
    rows = offers(catalogue())
    _publish(settings, rows)
    expected = _expected(rows)
    wait_until(
        lambda: _settled(settings, expected) or not process.alive(),
        timeout_s=240,
        what="every product's offer group to list exactly its merchants' offers",
    )
    assert process.alive(), process.log_tail()
    first = _groups(settings)
    # Same product, three merchants, three titles: one group. Variants: their own groups.
    families = {row["family"]: first[row["product_id"]]["offer_group"] for row in rows}
    assert len(set(families.values())) == len(families), families

    # /offers: the other merchants' offers, cheapest first in EUR (GBP converted).
    body = _offers(settings, "shopa-0")
    prices = [offer["price_normalised"] for offer in body["offers"]]
    assert len(prices) == 2
    assert all(p is not None for p in prices)
    assert prices == sorted(prices)
    assert {offer["product_id"] for offer in body["offers"]} == {"bestbuyz-0", "megamart-0"}
    # Converted with the dated table, which the answer names.
    assert body["exchange_rates"]["date"] == "2026-10-30"
    assert all(offer["unconverted"] is None for offer in body["offers"])

    # The product documents in Elasticsearch carry the group too.
    es = elasticsearch_client(settings)
    try:
        wait_until(
            lambda: (
                es.options(ignore_status=404)
                .get(index=settings.elasticsearch_index, id="megamart-0")
                .body.get("_source", {})
                .get("offer_group")
                == first["megamart-0"]["offer_group"]
            ),
            timeout_s=120,
            what="the Elasticsearch sink to write offer_group",
        )
    finally:
        es.close()

    # A re-feed (new prices, a new title for one offer) keeps every group's id.
    refeed = offers(catalogue(), seed=2, updated_at=1_700_000_100_000)
    for row in refeed:
        if row["product_id"] == "bestbuyz-3":
            row["fields"]["title"] = "LEGO 75257 Millennium Falcon - Star Wars set"
    _publish(settings, refeed)
    wait_until(
        lambda: all(
            (g := _groups(settings).get(row["product_id"])) is not None
            and g["updated_at"] == 1_700_000_100_000
            for row in refeed
            if row["product_id"] == "bestbuyz-3"
        ),
        timeout_s=180,
        what="the re-fed offer to be matched again",
    )
    wait_until(lambda: _settled(settings, expected), timeout_s=120, what="groups after re-feed")
    after = _groups(settings)
    assert {pid: g["offer_group"] for pid, g in after.items()} == {
        pid: g["offer_group"] for pid, g in first.items()
    }

    # A delete leaves the group: a tombstone for it, the others list it no more.
    publish_json(
        settings,
        [("shopa-0", {"product_id": "shopa-0", "op": "delete", "updated_at": 1_700_000_200_000})],
        "normalised",
    )
    remaining = {"bestbuyz-0", "megamart-0"}
    wait_until(
        lambda: (
            (latest := _groups(settings)).get("shopa-0", "") is None
            and all(set(latest[p]["members"]) == remaining for p in remaining)
        ),
        timeout_s=120,
        what="the deleted product to leave its group",
    )
    assert _groups(settings)["bestbuyz-0"]["offer_group"] == first["bestbuyz-0"]["offer_group"]


def test_two_workers_match_one_feed_into_the_right_groups(
    topic_settings: Settings, matcher_repository: Path, tmp_path: Path
) -> None:
    """Two matching workers in one consumer group: the three offers of a product land on
    either, so regroupings of one group run at the same time. The groups end up right, the
    offer index agrees with itself, and each product's last event is its stored group."""
    settings = topic_settings.model_copy(
        update={
            "model_repository": matcher_repository,
            "match_vector_wait_s": 30.0,
            "topic_partitions": 4,
        }
    )
    create_topics(settings)
    group, topic = faust_group_id(settings, runs_agents=True), settings.topic("normalised")
    workers = [
        WorkerProcess(
            settings.model_copy(update={"worker_web_port": _free_port()}),
            tmp_path / f"{name}.log",
            "--agents",
            "match",
            *extra,
            "--instance-id",
            name,
        )
        for name, extra in (("m0", ("--sinks",)), ("m1", ()))
    ]

    def owning() -> int:
        return sum(1 for p in partition_owners(settings, group, topic).values() if p)

    try:
        # One after the other, as in the scale-out test: two members joining the local
        # broker's group at the same instant can get an empty assignment (aiokafka fails).
        workers[0].start()
        wait_until(lambda: owning() == 1, timeout_s=180, what="m0 to own the input")
        workers[1].start()
        wait_until(lambda: owning() == 2, timeout_s=180, what="both workers to own partitions")
        rows = offers(catalogue())
        _publish(settings, rows)
        expected = _expected(rows)
        wait_until(
            lambda: _settled(settings, expected) or not all(w.alive() for w in workers),
            timeout_s=240,
            what="every product's offer group to list exactly its merchants' offers",
        )
        assert all(w.alive() for w in workers), [w.log_tail() for w in workers]
        es = elasticsearch_client(settings)
        try:
            es.indices.refresh(index=offer_index(settings))
            hits = es.search(index=offer_index(settings), size=500)["hits"]["hits"]
        finally:
            es.close()
        stored = {hit["_id"]: hit["_source"] for hit in hits}
        assert set(stored) == set(expected)
        for pid, doc in stored.items():
            for other in doc.get("edges") or {}:
                assert pid in (stored[other].get("edges") or {}), f"{pid}->{other} one-sided"
        latest = _groups(settings)
        assert {pid: latest[pid]["offer_group"] for pid in stored} == {
            pid: doc["offer_group"] for pid, doc in stored.items()
        }
    finally:
        for process in workers:
            if process.process is not None:
                process.stop()


def _histogram(settings: Settings, name: str) -> tuple[dict[float, float], float, float]:
    url = f"http://127.0.0.1:{settings.worker_web_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.split()[-1])
        elif line.startswith(f"{name}_sum"):
            total = float(line.split()[-1])
        elif line.startswith(f"{name}_count"):
            count = float(line.split()[-1])
    return buckets, total, count


def _matched(settings: Settings) -> float:
    """Products matched so far (0 until the worker's web server answers)."""
    try:
        return _histogram(settings, "catstream_match_seconds")[2]
    except OSError:  # urllib's URLError: not listening yet
        return 0.0


def _quantile(buckets: dict[float, float], q: float) -> float:
    """Upper bound of the bucket holding the q-quantile (a histogram's resolution)."""
    total = max(buckets.values())
    return next(le for le, seen in sorted(buckets.items()) if seen >= q * total)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.bench
def test_matching_bench(worker: tuple[Settings, WorkerProcess]) -> None:
    """Candidates per product, matches per second and p99 added latency of the matching agent."""
    settings, process = worker
    families = int(os.environ.get("CATSTREAM_MATCH_BENCH_FAMILIES", "40"))
    rows = offers(large_catalogue(families))
    assert process.process is not None
    cpu_before = _cpu_s(process.process.pid)
    started = time.monotonic()
    _publish(settings, rows)
    wait_until(
        lambda: _matched(settings) >= len(rows),
        timeout_s=1800,
        what=f"{len(rows)} products matched",
    )
    elapsed = time.monotonic() - started
    cpu = _cpu_s(process.process.pid) - cpu_before
    seconds, seconds_sum, matched = _histogram(settings, "catstream_match_seconds")
    _, candidates_sum, candidates_count = _histogram(settings, "catstream_match_candidates")
    expected = _expected(rows)
    latest = _groups(settings)
    right = sum(1 for pid, members in expected.items() if set(latest[pid]["members"]) == members)
    print(
        f"\nmatching bench: {len(rows)} offers ({families} products x 2 variants x 3 merchants)\n"
        f"  candidates per product  {candidates_sum / candidates_count:.1f}\n"
        f"  matches per second      {matched / elapsed:.2f} (wall, busy shared host)\n"
        f"  worker CPU per product  {cpu / matched:.3f} s (matching + both sinks + API)\n"
        f"  added latency           mean {seconds_sum / matched:.3f} s, "
        f"p99 <= {_quantile(seconds, 0.99)} s (histogram bucket)\n"
        f"  products in exactly their true group: {right}/{len(rows)}"
    )
    assert matched >= len(rows)
