"""The whole streaming path, measured: feed → normalise → Triton → Milvus + Elasticsearch.

    CATSTREAM_MODEL_REPOSITORY=... .venv/bin/python -m bench.pipeline_bench [--products 2000]

Against the running local stack (``catstream stack up``), in fresh topics, index
and collection of its own, with a trained categoriser (trained here through
``catstream train`` when the repository has none) and product images from a
loopback image server. One worker (``catstream worker --sinks``) runs throughout:

1. **warm-up**: a few products go all the way through (connections, caches);
2. **end to end**: ``--products`` new products published at once; products/s from
   the first publish until every consumer group (normalise+infer, Milvus sink,
   Elasticsearch sink) has committed everything *and* Milvus and Elasticsearch
   hold every product: all sinks acknowledged. Each process's CPU seconds over
   this phase show where the machine's time went;
3. **re-published feed**: the same feed again with 10% of titles changed (and a
   newer ``updated_at``), the other 90% unchanged: products/s until the worker and
   both sinks have committed everything and both stores hold every retitled product
   at its new ``updated_at`` (identical products publish nothing, so the end is the
   last changed product's arrival, not a count of predictions);
4. **latency**: new products published at a steady pace (``--latency-load`` of
   the end-to-end capacity); per product, prediction message timestamp minus
   raw message timestamp; p50 and p99;
5. **Triton-only ceiling**: the same normalised products sent straight to Triton
   in batches (image_encoder 64, categoriser ``--ceiling-batches``) with the async
   client, two requests in flight, images fetched beforehand;
6. **naive pipeline**: one product at a time, batch 1, sequential;
7. **peak RSS** (VmHWM, summed over each service's processes) of the worker,
   noida-db, tritonserver with its python-backend stubs, and Milvus.

Ratios: end-to-end / ceiling, end-to-end / naive. The report carries the load
average (the machine may be shared). Prints a markdown table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.normalise_bench import (
    RESULTS_DIR,
    BenchWorker,
    ProcessPeak,
    bench_settings,
    machine,
    profile_summary,
    profiling,
    read_all,
    tree_cpu_seconds,
    write_json,
)
from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.settings import Settings, load_settings
from deploy.demo_images import ImageServer
from deploy.services.processes import free_port
from deploy.services.state import load_state
from feeds.generator import GenerateOptions, generate_feed
from feeds.mapping import load_mapping
from schemas.events import NormalisedProduct
from streams.image_embedding import IMAGE_DIM, MAX_IMAGES_PER_REQUEST, ImageEmbeddings
from streams.images import FetchedImage, ImageFetcher
from streams.topics import create_topics
from training.generated import train_on_generated
from triton_models.categoriser.contract import categorise, categorise_with_images
from triton_models.categoriser.metadata import ModelVersionError, served_version
from triton_models.triton_client import TritonClient
from workers.elasticsearch_index import elasticsearch_client
from workers.milvus_collection import connect, count_rows
from workers.milvus_filters import Filter
from workers.run_data import delete_run_data

log = get_logger(__name__)

Event = dict[str, Any]


# --- feeds and publishing ------------------------------------------------------------------
def feed_events(
    settings: Settings, products: int, seed: int, image_base_url: str, id_prefix: str
) -> list[Event]:
    """A generated feed's rows as raw events (the publisher's mapping), ids prefixed.

    The generator numbers products from the same start for every seed: the prefix
    keeps the phases' products apart.
    """
    out = io.BytesIO()
    options = GenerateOptions(
        products=products,
        network="generic",
        seed=seed,
        fmt="jsonl",
        image_base_url=image_base_url,
        taxonomy_path=settings.taxonomy_path,
    )
    generate_feed(options, out)
    mapping = load_mapping("generic")
    events = []
    for line in out.getvalue().splitlines():
        event = mapping.map_row(json.loads(line))
        event["product_id"] = f"{id_prefix}{event['product_id']}"
        events.append(event)
    return events


@dataclass(frozen=True)
class Arrivals:
    """Products that must reach both stores at ``updated_at`` before a phase is done."""

    ids: frozenset[str]
    updated_at: int


def with_changed_titles(
    events: list[Event], share: float, seed: int
) -> tuple[list[Event], Arrivals]:
    """The same feed with ``share`` of the products retitled and timestamped now, and
    those products (what must arrive in the stores)."""
    rng = random.Random(seed)
    ids = sorted({e["product_id"] for e in events})
    changed = set(rng.sample(ids, round(share * len(ids))))
    now_ms = int(time.time() * 1000)
    out = []
    for event in events:
        if event["product_id"] in changed:
            event = {
                **event,
                "title": f"{event.get('title') or ''} (new season)",
                "updated_at": now_ms,
            }
        out.append(event)
    return out, Arrivals(frozenset(changed), now_ms)


def publish_events(settings: Settings, events: Sequence[Event], rate: float | None = None) -> float:
    """Publish to products.raw (paced at ``rate``/s when given); returns the seconds taken."""
    producer = Producer(
        librdkafka_config(
            settings,
            **{
                # A new idempotent producer holds its first messages until the broker gave
                # it a producer id: 502 ms on noida-db, which a paced run counted as the
                # pipeline's latency (its first 36 products were all ~0.5 s late). Paced
                # timestamps must be send times, so that producer is plain (acks=all still).
                "enable.idempotence": not rate,
                "compression.type": "lz4",
                # Paced messages go out at once, so their timestamps are their send times.
                "linger.ms": 0 if rate else 20,
            },
        )
    )
    topic = settings.topic("raw")
    if rate:
        producer.list_topics(topic, timeout=30)  # connected, metadata known: no first-send wait
    started = time.perf_counter()
    for index, event in enumerate(events):
        if rate:
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        payload = json.dumps(event, ensure_ascii=False, default=str).encode()
        while True:
            try:
                producer.produce(topic, key=event["product_id"].encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} events were not delivered; check the broker")
    return time.perf_counter() - started


def distinct_ids(events: Iterable[Event]) -> set[str]:
    return {e["product_id"] for e in events}


# --- "all sinks acknowledged" -----------------------------------------------------------------
def sink_groups(settings: Settings) -> dict[str, list[str]]:
    """The worker's sink consumer groups and the topic keys each reads."""
    return {
        f"{settings.app_id}-milvus-sink": ["embeddings"],
        f"{settings.app_id}-elasticsearch-sink": ["normalised", "predictions"],
    }


def sink_lag(settings: Settings) -> int:
    """Messages the sinks have not committed yet (-1 while a sink has committed nothing)."""
    lag = 0
    for group, keys in sink_groups(settings).items():
        behind = group_lag(settings, group, keys)
        if behind < 0:
            return -1
        lag += behind
    return lag


def worker_lag(settings: Settings) -> int:
    """Messages the worker's agents (normalise on raw, infer on normalised) have not
    committed yet (-1 while they have committed nothing)."""
    return group_lag(settings, settings.app_id, ("raw", "normalised"))


def group_lag(settings: Settings, group: str, keys: Sequence[str]) -> int:
    """Messages of the ``keys`` topics ``group`` has not committed (-1 while it has
    committed nothing on a partition that holds messages)."""
    consumer = Consumer(librdkafka_config(settings, **{"group.id": group}))
    try:
        partitions = []
        for key in keys:
            topic = settings.topic(key)
            meta = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            partitions += [TopicPartition(topic, p) for p in meta]
        lag = 0
        for committed in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(committed, timeout=10)
            if high and committed.offset < 0:
                return -1
            lag += max(0, high - committed.offset) if high else 0
        return lag
    finally:
        consumer.close()


class Stores:
    """Row counts of this run's Milvus collection and Elasticsearch index."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.es = elasticsearch_client(settings)
        self.milvus = connect(settings)

    def counts(self) -> tuple[int, int]:
        index, collection = self.settings.elasticsearch_index, self.settings.milvus_collection
        try:
            self.es.indices.refresh(index=index)
            documents = int(self.es.count(index=index)["count"])
        except Exception:  # the sink has not created the index yet
            documents = 0
        try:
            rows = count_rows(self.milvus, collection)
        except Exception:  # nor the collection
            rows = 0
        return rows, documents

    def arrived(self, arrivals: Arrivals) -> tuple[int, int]:
        """How many of ``arrivals.ids`` Milvus and Elasticsearch (document and its
        prediction) hold at ``arrivals.updated_at``."""
        ids, at = sorted(arrivals.ids), arrivals.updated_at
        try:
            found = self.es.mget(index=self.settings.elasticsearch_index, ids=ids)["docs"]
            sources = [d.get("_source") or {} for d in found if d.get("found")]
            documents = sum(
                1
                for doc in sources
                if doc.get("updated_at") == at
                and (doc.get("prediction") or {}).get("updated_at") == at
            )
        except Exception:  # the index is not there yet
            documents = 0
        try:
            selected = Filter("product_id in {ids}", {"ids": ids}).kwargs(server_binds=False)
            result = self.milvus.query(
                self.settings.milvus_collection,
                **selected,
                output_fields=["updated_at"],
                consistency_level="Strong",
            )
            rows = sum(1 for row in result if int(row["updated_at"]) == at)
        except Exception:  # nor the collection
            rows = 0
        return rows, documents


class PredictionWatch:
    """Products predicted since the watch began (reads products.predictions from its end)."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topic("predictions")
        self.consumer = Consumer(
            librdkafka_config(
                settings,
                **{"group.id": f"bench-watch-{time.time_ns()}", "enable.auto.commit": False},
            )
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assigned = []
        for partition in partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            assigned.append(TopicPartition(topic, partition, high))
        self.consumer.assign(assigned)
        # Paused between polls: an unpaused librdkafka consumer fetches in a tight loop
        # against noida-db (~0.2 CPU-s/s of the broker's), which the bench would then
        # count as the pipeline's broker CPU.
        self.assigned = assigned
        self.next_offset = {tp.partition: tp.offset for tp in assigned}
        self.consumer.pause(assigned)
        self.seen: set[str] = set()
        self.last_ms = 0
        # perf_counter time each end condition was first seen to hold (in order).
        self.conditions: dict[str, float] = {}

    def poll(self, timeout_s: float = 5.0) -> None:
        """Read up to the partitions' end offsets as of now (or for ``timeout_s``).

        Not "until a short consume comes back empty": a resumed consumer's first fetch
        can take longer than any such wait, and then the watch saw the predictions of a
        re-published feed ~10 s after they were all written (session 5), which the
        bench counted as the pipeline's time.
        """
        ends = {
            tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            for tp in self.assigned
        }
        behind = {p for p, end in ends.items() if self.next_offset.get(p, 0) < end}
        if not behind:
            return
        deadline = time.monotonic() + timeout_s
        self.consumer.resume(self.assigned)
        try:
            while behind and time.monotonic() < deadline:
                for message in self.consumer.consume(1000, 0.05):
                    if message.error() is not None:
                        continue
                    partition, offset = message.partition() or 0, message.offset() or 0
                    self.next_offset[partition] = offset + 1
                    if offset + 1 >= ends.get(partition, 0):
                        behind.discard(partition)
                    key, value = message.key(), message.value()
                    if key is not None and value is not None:
                        self.seen.add(key.decode())
                        self.last_ms = max(self.last_ms, message.timestamp()[1])
        finally:
            self.consumer.pause(self.assigned)

    def close(self) -> None:
        self.consumer.close()


def wait_all_acknowledged(
    settings: Settings,
    worker: BenchWorker,
    watch: PredictionWatch,
    products: set[str],
    stored: int,
    timeout_s: float,
    arrivals: Arrivals | None = None,
) -> float:
    """perf_counter time when every product is predicted, the sinks have committed all
    they were sent, and Milvus and Elasticsearch both hold ``stored`` products.

    With ``arrivals`` (a re-published feed) only those products must be predicted
    (identical products publish nothing, so no count of them can be waited for), the
    worker must have committed everything it was sent (so it has judged every event of
    the feed), then the sinks, and both stores must hold each of ``arrivals`` at its
    new ``updated_at``.
    """
    stores = Stores(settings)
    expected = set(arrivals.ids) if arrivals is not None else products
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        now = time.perf_counter()
        watch.poll()
        # Cheapest check first: the sink and store queries only once all are predicted.
        # The worker's lag before the sinks': what it has not committed may still add to
        # what the sinks are sent.
        if expected <= watch.seen:
            watch.conditions.setdefault("predicted", now)
            if (arrivals is None or worker_lag(settings) == 0) and sink_lag(settings) == 0:
                watch.conditions.setdefault("sinks_committed", now)
                full = stores.counts() == (stored, stored)
                if full and (arrivals is None or stores.arrived(arrivals) == (len(expected),) * 2):
                    watch.conditions.setdefault("stored", now)
                    return now
        time.sleep(0.2)
    rows, documents = stores.counts()
    raise RuntimeError(
        f"after {timeout_s:.0f}s {len(products & watch.seen)} of {len(products)} products "
        f"were predicted, Milvus has {rows} and Elasticsearch {documents} of {stored}, "
        f"the sinks lag {sink_lag(settings)}; read {worker.log_path}"
    )


# --- the categoriser -----------------------------------------------------------------------------
def ensure_categoriser(settings: Settings, workdir: Path, products: int = 800) -> int:
    """The served categoriser version; trains one with ``catstream train`` when there is none."""
    try:
        return served_version(settings.model_repository, settings.categoriser_model)
    except ModelVersionError:
        pass
    train_on_generated(settings, workdir, products, epochs=60)
    return served_version(settings.model_repository, settings.categoriser_model)


# --- Triton alone: the ceiling and the naive pipeline -------------------------------------------
def normalised_products(settings: Settings, ids: set[str]) -> list[NormalisedProduct]:
    """The latest normalised event of each of ``ids`` (as the worker published it)."""
    latest: dict[str, NormalisedProduct] = {}
    for record in read_all(settings, "normalised"):
        if record.key in ids and record.value is not None:
            product = NormalisedProduct.model_validate_json(record.value)
            if product.op != "delete":
                latest[product.product_id] = product
    return list(latest.values())


async def fetch_images(settings: Settings, products: list[NormalisedProduct]) -> list[bytes | None]:
    async with ImageFetcher(settings) as fetcher:
        wanted = [p.image_urls[0] if p.image_urls else "" for p in products]
        results = await fetcher.fetch_many(u for u in wanted if u)
    by_url = {r.url: r.data for r in results if isinstance(r, FetchedImage)}
    return [by_url.get(u) if u else None for u in wanted]


@dataclass
class TritonRun:
    name: str
    products: int
    batch_size: int
    seconds: float
    products_per_s: float
    image_encode_s: float
    categorise_s: float
    triton_cpu_s: float
    p99_call_ms: float = 0.0  # one product's whole round (naive only)


async def _encode_images(
    triton: TritonClient, images: list[bytes | None], batch: int, in_flight: int
) -> ImageEmbeddings:
    n = len(images)
    vectors = np.zeros((n, IMAGE_DIM), dtype=np.float32)
    mask = np.zeros((n, 1), dtype=np.float32)
    rows = [i for i, data in enumerate(images) if data is not None]
    gate = asyncio.Semaphore(in_flight)

    async def encode(chunk: list[int]) -> None:
        payload = np.array([[images[i]] for i in chunk], dtype=np.object_)
        async with gate:
            out = await triton.infer("image_encoder", {"IMAGE": payload}, ["EMBEDDING", "OK"])
        for row, index in enumerate(chunk):
            if bool(out["OK"][row][0]):
                vectors[index], mask[index, 0] = out["EMBEDDING"][row], 1.0

    await asyncio.gather(*(encode(rows[s : s + batch]) for s in range(0, len(rows), batch)))
    return ImageEmbeddings(vectors, mask, [False] * n)


async def _categorise_all(
    settings: Settings,
    triton: TritonClient,
    version: int,
    products: list[NormalisedProduct],
    images: ImageEmbeddings,
    batch: int,
    in_flight: int,
) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(start: int) -> None:
        part = ImageEmbeddings(
            images.vectors[start : start + batch], images.mask[start : start + batch], []
        )
        async with gate:
            await categorise(
                triton, settings.categoriser_model, version, products[start : start + batch], part
            )

    await asyncio.gather(*(one(s) for s in range(0, len(products), batch)))


async def triton_batched(
    settings: Settings,
    version: int,
    products: list[NormalisedProduct],
    images: list[bytes | None],
    batch: int,
    triton_pid: int | None,
    in_flight: int = 2,
    pipeline: str = "",
) -> TritonRun:
    """Images and categoriser in optimal batches, ``in_flight`` requests at once: two
    calls per batch, or one ``pipeline`` (product_pipeline) request per batch."""
    async with TritonClient.from_settings(settings) as triton:
        await _categorise_all(settings, triton, version, products[:8], _no_images(8), 8, 1)
        cpu = tree_cpu_seconds(triton_pid) if triton_pid else 0.0
        started = time.perf_counter()
        if pipeline:  # one request per batch: no separate image phase to time
            await _pipeline_all(triton, pipeline, version, products, images, batch, in_flight)
            encoded = started
        else:
            embeddings = await _encode_images(
                triton, images, min(batch, MAX_IMAGES_PER_REQUEST), in_flight
            )
            encoded = time.perf_counter()
            await _categorise_all(settings, triton, version, products, embeddings, batch, in_flight)
        done = time.perf_counter()
    cpu = (tree_cpu_seconds(triton_pid) - cpu) if triton_pid else 0.0
    via = f"{pipeline}, " if pipeline else ""
    return TritonRun(
        name=f"Triton only, {via}batch {batch}, {in_flight} in flight",
        products=len(products),
        batch_size=batch,
        seconds=round(done - started, 3),
        products_per_s=round(len(products) / (done - started), 1),
        image_encode_s=round(encoded - started, 3),
        categorise_s=round(done - encoded, 3),
        triton_cpu_s=round(cpu, 2),
    )


async def _served(settings: Settings, model: str) -> bool:
    async with TritonClient.from_settings(settings) as triton:
        return await triton.is_ready(model)


async def _pipeline_all(
    triton: TritonClient,
    pipeline: str,
    version: int,
    products: list[NormalisedProduct],
    images: list[bytes | None],
    batch: int,
    in_flight: int,
) -> None:
    gate = asyncio.Semaphore(in_flight)

    async def one(start: int) -> None:
        part = slice(start, start + batch)
        async with gate:
            await categorise_with_images(triton, pipeline, version, products[part], images[part])

    await asyncio.gather(*(one(s) for s in range(0, len(products), batch)))


def _no_images(n: int) -> ImageEmbeddings:
    return ImageEmbeddings(
        np.zeros((n, IMAGE_DIM), dtype=np.float32), np.zeros((n, 1), dtype=np.float32), []
    )


async def triton_naive(
    settings: Settings,
    version: int,
    products: list[NormalisedProduct],
    images: list[bytes | None],
    triton_pid: int | None,
    pipeline: str = "",
) -> TritonRun:
    """One product at a time: its image (batch 1), then the categoriser (batch 1); or
    one ``pipeline`` request per product."""
    image_s = categorise_s = 0.0
    calls: list[float] = []
    async with TritonClient.from_settings(settings) as triton:
        cpu = tree_cpu_seconds(triton_pid) if triton_pid else 0.0
        for product, image in zip(products, images, strict=True):
            started = time.perf_counter()
            if pipeline:
                await categorise_with_images(triton, pipeline, version, [product], [image])
                encoded = started
            else:
                embedding = await _encode_images(triton, [image], 1, 1)
                encoded = time.perf_counter()
                await categorise(triton, settings.categoriser_model, version, [product], embedding)
            image_s += encoded - started
            categorise_s += time.perf_counter() - encoded
            calls.append(1000 * (time.perf_counter() - started))
    cpu = (tree_cpu_seconds(triton_pid) - cpu) if triton_pid else 0.0
    seconds = image_s + categorise_s
    return TritonRun(
        name=f"naive: one product per {pipeline + ' ' if pipeline else ''}call, sequential",
        products=len(products),
        batch_size=1,
        seconds=round(seconds, 3),
        products_per_s=round(len(products) / seconds, 1),
        image_encode_s=round(image_s, 3),
        categorise_s=round(categorise_s, 3),
        triton_cpu_s=round(cpu, 2),
        p99_call_ms=round(percentile(sorted(calls), 0.99), 1),
    )


# --- the report ----------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    products: int  # distinct products published in the phase
    events: int  # raw events published
    publish_s: float
    seconds: float  # first publish to all sinks acknowledged
    products_per_s: float
    predicted_s: float  # first publish to the last prediction's message timestamp
    predicted_products_per_s: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process tree, over the phase
    # noida-db's /proc/<pid>/io over the phase: its file writes (one per state save; it
    # answers requests with send/recv, which these do not count) and the bytes written.
    broker_io: dict[str, int] = field(default_factory=dict)
    # noida-db keeps its data in memory and rewrites all of it as JSON about once a second
    # while anything changes: its CPU follows these bytes, not the requests (bench/README).
    broker_state_mb: tuple[float, float] = (0.0, 0.0)  # its saved files, before and after
    # Seconds from the first publish until each end condition was first seen to hold
    # (polled every 0.2 s, in order: all predicted, sinks committed, stores hold all).
    conditions_s: dict[str, float] = field(default_factory=dict)
    # The first worker's histogram means over the phase (batch sizes, Triton calls).
    worker_means: dict[str, float] = field(default_factory=dict)


@dataclass
class Latency:
    products: int
    rate_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    # the first hop, publish → normalised (the rest is normalised → prediction)
    normalised_p50_ms: float = 0.0
    normalised_p99_ms: float = 0.0
    # the worker's own histograms over the phase: mean milliseconds (or products) per
    # observation, e.g. "stage infer" per micro-batch, "triton categoriser" per request
    worker_means: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineReport:
    model_version: int
    end_to_end: Phase
    republish: Phase
    latency: Latency
    ceiling: list[TritonRun]
    naive: TritonRun
    peaks: list[ProcessPeak]
    profile: dict[str, Any] | None
    ratio_to_ceiling: float
    ratio_to_naive: float
    machine_before: dict[str, Any]
    machine_after: dict[str, Any]
    settings: dict[str, Any]
    idle_cpu_per_s: dict[str, float] = field(default_factory=dict)  # per process, idle
    naive_runs: list[TritonRun] = field(default_factory=list)  # each way; ``naive``: the faster

    def latency_goal_ms(self) -> float:
        """Issue 10's p99 bound: at half the maximum rate a micro-batch holds about one
        product, so Triton's per-batch latency is the naive pipeline's one-product call."""
        return 2 * float(self.settings["batch_max_wait_ms"]) + self.naive.p99_call_ms

    def cpu_ms_per_product(self) -> dict[str, float]:
        """CPU milliseconds per product of each process tree over the end-to-end phase."""
        e2e = self.end_to_end
        return {k: round(1000 * v / e2e.products, 1) for k, v in e2e.cpu_s.items()}

    def republish_cpu_ms_per_product(self) -> dict[str, float]:
        """The same over the re-published phase (per product of the re-feed)."""
        again = self.republish
        return {k: round(1000 * v / again.products, 2) for k, v in again.cpu_s.items()}

    def table(self) -> str:
        e2e, again, lat = self.end_to_end, self.republish, self.latency
        best = max(self.ceiling, key=lambda r: r.products_per_s)
        rows = [
            (
                "end to end, publish → all sinks acknowledged",
                f"{e2e.products_per_s:,.1f} products/s",
            ),
            (
                "end to end, publish → last prediction",
                f"{e2e.predicted_products_per_s:,.1f} products/s",
            ),
            (
                f"latency publish → prediction, p50 (paced at {lat.rate_per_s:g}/s)",
                f"{lat.p50_ms:,.0f} ms",
            ),
            ("latency publish → prediction, p99", f"{lat.p99_ms:,.0f} ms"),
            (
                "latency goal: 2 × batch window + naive p99 call (the batch the paced rate forms)",
                f"{self.latency_goal_ms():,.0f} ms",
            ),
            (
                "latency publish → normalised, p50 / p99",
                f"{lat.normalised_p50_ms:,.0f} / {lat.normalised_p99_ms:,.0f} ms",
            ),
            *(
                (f"paced, worker mean {label}", f"{mean:,.1f}")
                for label, mean in lat.worker_means.items()
            ),
            *(
                (f"end to end, worker mean {label}", f"{mean:,.1f}")
                for label, mean in e2e.worker_means.items()
            ),
            (f"Triton-only ceiling ({best.name})", f"{best.products_per_s:,.1f} products/s"),
            ("end to end / Triton-only ceiling", f"{self.ratio_to_ceiling:.2f}"),
            (f"naive pipeline ({self.naive.name})", f"{self.naive.products_per_s:,.1f} products/s"),
            ("end to end / naive", f"{self.ratio_to_naive:.2f}"),
            ("re-published feed, 90% unchanged", f"{again.products_per_s:,.1f} products/s"),
            (
                "re-published / fresh, all sinks acknowledged (goal ≥ 8)",
                f"{again.products_per_s / e2e.products_per_s:.2f}" if e2e.products_per_s else "-",
            ),
            (
                "re-published feed, publish → last prediction",
                f"{again.predicted_products_per_s:,.1f} products/s",
            ),
            *(
                (
                    f"{run.name}",
                    f"{run.products_per_s:,.1f} products/s, Triton CPU "
                    f"{1000 * run.triton_cpu_s / max(run.products, 1):,.1f} ms per product",
                )
                for run in [*self.ceiling, *self.naive_runs]
            ),
            *(
                (f"CPU per product, re-published, {name}", f"{ms:,.2f} ms")
                for name, ms in self.republish_cpu_ms_per_product().items()
            ),
            *(
                (f"CPU per product, {name}", f"{ms:,.1f} ms")
                for name, ms in self.cpu_ms_per_product().items()
            ),
            (
                "CPU per product outside Triton (all but triton)",
                f"{sum(v for k, v in self.cpu_ms_per_product().items() if k != 'triton'):,.1f} ms",
            ),
            *(
                (f"idle CPU, {name}", f"{per_s:.3f} CPU-s/s")
                for name, per_s in self.idle_cpu_per_s.items()
            ),
            *(
                (f"peak RSS {p.name} ({len(p.pids)} processes)", f"{p.peak_rss_mib:,.0f} MiB")
                for p in self.peaks
            ),
        ]
        if "syscw" in e2e.broker_io and "wchar" in e2e.broker_io:
            rows.append(
                (
                    "noida-db over end to end: state saves, MB written",
                    f"{e2e.broker_io['syscw']:,}, {e2e.broker_io['wchar'] / 1e6:,.0f}",
                )
            )
        rows.append(
            (
                "noida-db saved state, before → after end to end",
                f"{e2e.broker_state_mb[0]:,.1f} → {e2e.broker_state_mb[1]:,.1f} MB",
            )
        )
        lines = ["| measurement | value |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)]
        cpu = ", ".join(f"{k} {v:.0f}s" for k, v in e2e.cpu_s.items())
        lines.append(
            f"\n{e2e.products} products ({e2e.events} events) in {e2e.seconds:.0f}s; CPU seconds "
            f"over that phase: {cpu}. {self.machine_before.get('cpus')} CPUs, load average "
            f"before {self.machine_before.get('load_average')}, after "
            f"{self.machine_after.get('load_average')}."
        )
        if self.profile:
            shares = ", ".join(
                f"{name} {share:.0%}" for name, share in self.profile["by_component"].items()
            )
            lines.append(f"\nWorker Python CPU by component (py-spy, GIL samples): {shares}.")
        return "\n".join(lines)


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


# --- the phases ------------------------------------------------------------------------------
def service_pids(settings: Settings) -> dict[str, int]:
    """PIDs of the stack's services (from its stack.json)."""
    state = load_state(settings.home / "stack.json")
    if state is None:
        return {}
    return {name: svc.pid for name, svc in state.services.items() if svc.pid is not None}


def cpu_snapshot(worker: BenchWorker, services: dict[str, int]) -> dict[str, float]:
    pids = {"worker": worker.pid, **services}
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def process_io(pid: int | None) -> dict[str, int]:
    """``/proc/<pid>/io`` counters (syscr, syscw, rchar, wchar); empty if unreadable."""
    if pid is None:
        return {}
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return {}
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {k: int(fields[k]) for k in ("syscr", "syscw", "rchar", "wchar") if k in fields}


def broker_state_mb(settings: Settings) -> float:
    """Size of the files noida-db saves its state to (Kafka and Elasticsearch), MB."""
    state = load_state(settings.home / "stack.json")
    service = state.services.get("noida") if state is not None else None
    if service is None or service.data_dir is None:
        return 0.0
    files = Path(service.data_dir).glob("*.json")
    return round(sum(f.stat().st_size for f in files if f.is_file()) / 1e6, 1)


def run_phase(
    name: str,
    settings: Settings,
    worker: BenchWorker,
    events: list[Event],
    stored: int,
    services: dict[str, int],
    timeout_s: float,
    arrivals: Arrivals | None = None,
) -> Phase:
    """Publish ``events``; done when all groups committed and the stores hold ``stored``
    (and ``arrivals``, see ``wait_all_acknowledged``)."""
    ids = distinct_ids(events)
    watch = PredictionWatch(settings)
    cpu_before = cpu_snapshot(worker, services)
    io_before = process_io(services.get("noida"))
    state_before = broker_state_mb(settings)
    histograms_before = histogram_totals(worker.settings.metrics_port)
    started, started_ms = time.perf_counter(), time.time() * 1000
    publish_s = publish_events(settings, events)
    try:
        done = wait_all_acknowledged(settings, worker, watch, ids, stored, timeout_s, arrivals)
    finally:
        watch.close()
    cpu_after = cpu_snapshot(worker, services)
    io_after = process_io(services.get("noida"))
    predicted_s = (watch.last_ms - started_ms) / 1000
    return Phase(
        name=name,
        products=len(ids),
        events=len(events),
        publish_s=round(publish_s, 3),
        seconds=round(done - started, 3),
        products_per_s=round(len(ids) / (done - started), 2),
        predicted_s=round(predicted_s, 3),
        predicted_products_per_s=round(len(ids) / predicted_s, 2) if predicted_s > 0 else 0.0,
        cpu_s={k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after},
        broker_state_mb=(state_before, broker_state_mb(settings)),
        broker_io={k: io_after[k] - io_before[k] for k in io_after if k in io_before},
        conditions_s={k: round(t - started, 3) for k, t in watch.conditions.items()},
        worker_means=histogram_means(
            histograms_before, histogram_totals(worker.settings.metrics_port)
        ),
    )


def measure_latency(
    settings: Settings, worker: BenchWorker, events: list[Event], rate: float, stored: int
) -> Latency:
    ids = distinct_ids(events)
    watch = PredictionWatch(settings)
    before = histogram_totals(worker.settings.metrics_port)
    publish_events(settings, events, rate=rate)
    try:
        wait_all_acknowledged(settings, worker, watch, ids, stored, 600)
    finally:
        watch.close()
    means = histogram_means(before, histogram_totals(worker.settings.metrics_port))
    sent: dict[str, int] = {}
    for record in read_all(settings, "raw"):
        if record.key in ids:
            sent.setdefault(record.key, record.timestamp_ms)  # each product's first event
    predicted: dict[str, int] = {}
    for record in read_all(settings, "predictions"):
        if record.key in sent and record.key not in predicted and record.value is not None:
            predicted[record.key] = record.timestamp_ms
    latencies = sorted(float(predicted[k] - sent[k]) for k in predicted)
    if len(latencies) < len(sent):
        raise RuntimeError(f"only {len(latencies)} of {len(sent)} paced products were predicted")
    normalised = sorted(float(t - sent[k]) for k, t in first_timestamps(settings, sent).items())
    return Latency(
        products=len(latencies),
        rate_per_s=round(rate, 2),
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        mean_ms=round(statistics.fmean(latencies), 1),
        max_ms=latencies[-1],
        normalised_p50_ms=percentile(normalised, 0.5) if normalised else 0.0,
        normalised_p99_ms=percentile(normalised, 0.99) if normalised else 0.0,
        worker_means=means,
    )


# Where a paced product's time goes inside the worker (issue 10's latency goal).
LATENCY_HISTOGRAMS = {
    "catstream_stage_seconds": "stage",
    "catstream_record_age_seconds": "record age at",
    "catstream_triton_request_seconds": "triton",
    "catstream_image_fetch_seconds": "image fetch",
    "catstream_batch_size": "products per batch,",
}


def histogram_totals(metrics_port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of each worker histogram in ``LATENCY_HISTOGRAMS``, by its label."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        text = httpx.get(url, timeout=10).text
    except httpx.ConnectError:
        # Before the warm-up the worker may not serve metrics yet: nothing counted so far.
        return {}
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        prefix = LATENCY_HISTOGRAMS.get(family.name)
        for sample in family.samples if prefix else []:
            suffix = sample.name.removeprefix(family.name)
            if suffix in ("_sum", "_count"):
                label = " ".join([str(prefix), *map(str, sample.labels.values())])
                totals.setdefault(label, [0.0, 0.0])[suffix == "_count"] += sample.value
    return {k: (v[0], v[1]) for k, v in totals.items()}


def histogram_means(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean per observation between two ``histogram_totals``: ms for times, else as is."""
    means: dict[str, float] = {}
    for label, (total, count) in after.items():
        old_total, old_count = before.get(label, (0.0, 0.0))
        if count > old_count:
            scale = 1.0 if label.startswith("products") else 1000.0
            means[label] = round(scale * (total - old_total) / (count - old_count), 1)
    return means


def first_timestamps(settings: Settings, keys: dict[str, int]) -> dict[str, int]:
    """When each product's first normalised event was published (its record timestamp)."""
    first: dict[str, int] = {}
    for record in read_all(settings, "normalised"):
        if record.key in keys and record.key not in first and record.value is not None:
            first[record.key] = record.timestamp_ms
    return first


def _process_name(process: BenchWorker) -> str:
    if process.command == "sink":
        return f"{process.args[0]}-sink"
    return process.args[-1]  # worker-<n>


def measure_idle(
    worker: BenchWorker, services: dict[str, int], seconds: float, settle_s: float = 5.0
) -> dict[str, float]:
    """CPU seconds per second of each process while nothing is published."""
    if seconds <= 0:
        return {}
    time.sleep(settle_s)  # the warm-up's last commits and flushes
    before, started = cpu_snapshot(worker, services), time.perf_counter()
    time.sleep(seconds)
    after, elapsed = cpu_snapshot(worker, services), time.perf_counter() - started
    return {k: round((after[k] - before[k]) / elapsed, 4) for k in after}


@dataclass(frozen=True)
class PipelineOptions:
    products: int = 2000
    latency_products: int = 300
    latency_load: float = 0.5  # share of the measured end-to-end capacity
    naive_products: int = 100
    ceiling_batches: tuple[int, ...] = (64, 256)
    changed_share: float = 0.1
    timeout_s: float = 1800.0
    profile: bool = False  # py-spy the worker over the end-to-end phase
    idle_s: float = 20.0  # idle CPU measured after the warm-up
    sinks_in_worker: bool = False  # `worker --sinks` (the demo) instead of `catstream sink ...`
    workers: int = 1  # worker processes in the agents' consumer group
    keep_data: bool = False  # keep the run's topics, index and collection afterwards


def run_pipeline_bench(
    settings: Settings, workdir: Path, options: PipelineOptions | None = None
) -> PipelineReport:
    options = options or PipelineOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(settings, "pipeline").model_copy(
        update={"image_allow_private": True}  # the images are served on loopback
    )
    version = ensure_categoriser(settings, workdir)
    services = service_pids(settings)
    before = machine()
    create_topics(settings)
    # The latency phase reads worker-0's histograms from its /metrics.
    worker_settings = settings.model_copy(update={"metrics_port": free_port()})
    with ImageServer() as images:
        if options.sinks_in_worker:
            worker = BenchWorker(
                worker_settings, workdir / "pipeline-worker.log", "--sinks"
            ).start()
            sinks: list[BenchWorker] = []
        else:  # the production shape: each sink its own process
            worker = BenchWorker(
                worker_settings, workdir / "pipeline-worker.log", "--instance-id", "worker-0"
            ).start()
            sinks = [
                BenchWorker(settings, workdir / f"{name}-sink.log", name, command="sink").start()
                for name in ("milvus", "elasticsearch")
            ]
            # More workers in the same consumer group, each its own static member.
            sinks += [
                BenchWorker(
                    settings, workdir / f"pipeline-worker-{n}.log", "--instance-id", f"worker-{n}"
                ).start()
                for n in range(1, options.workers)
            ]
            services = {**services, **{_process_name(s): s.pid for s in sinks}}
        try:
            report = _run_phases(settings, worker, images.base_url, services, options, workdir)
        finally:
            worker.stop()
            for sink in sinks:
                sink.stop()
        # The streaming phases are the long part: keep them even if a Triton-only run
        # below fails (a python-backend stub can die on a crowded host).
        partial = {k: v for k, v in report.items() if k not in ("ids", "profile")}
        write_json(
            {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in partial.items()},
            workdir / "streaming-phases.json",
        )
        products = normalised_products(settings, report["ids"])
        fetched = asyncio.run(fetch_images(settings, products))
    if not options.keep_data:
        delete_run_data(settings)
    triton_pid = services.get("triton")
    # Both ways of calling Triton (two calls per batch, or one product_pipeline request):
    # the ceiling is the faster, and so is the naive pipeline the stream is held to.
    pipeline = settings.product_pipeline_model or "product_pipeline"
    ways = ["", pipeline] if asyncio.run(_served(settings, pipeline)) else [""]
    ceiling = [
        asyncio.run(triton_batched(settings, version, products, fetched, b, triton_pid, 2, way))
        for way in ways
        for b in options.ceiling_batches
    ]
    n = options.naive_products
    naive_runs = [
        asyncio.run(triton_naive(settings, version, products[:n], fetched[:n], triton_pid, way))
        for way in ways
    ]
    naive = max(naive_runs, key=lambda run: run.products_per_s)
    assert worker.peak is not None
    extra = {_process_name(s) for s in sinks}
    peaks = [
        worker.peak,
        *(s.peak for s in sinks if s.peak is not None),
        *(ProcessPeak.of(name, pid) for name, pid in services.items() if name not in extra),
    ]
    e2e: Phase = report["end_to_end"]
    best = max(r.products_per_s for r in ceiling)
    return PipelineReport(
        model_version=version,
        end_to_end=e2e,
        republish=report["republish"],
        latency=report["latency"],
        ceiling=ceiling,
        naive=naive,
        naive_runs=naive_runs,
        peaks=peaks,
        profile=report["profile"],
        ratio_to_ceiling=round(e2e.products_per_s / best, 3),
        ratio_to_naive=round(e2e.products_per_s / naive.products_per_s, 3),
        idle_cpu_per_s=report["idle"],
        machine_before=before,
        machine_after=machine(),
        settings={
            "batch_max_products": settings.batch_max_products,
            "batch_max_wait_ms": settings.batch_max_wait_ms,
            "max_batches_in_flight": settings.max_batches_in_flight,
            "refresh_identical": settings.refresh_identical,
            "options": asdict(options),
        },
    )


def _run_phases(
    settings: Settings,
    worker: BenchWorker,
    image_url: str,
    services: dict[str, int],
    options: PipelineOptions,
    workdir: Path,
) -> dict[str, Any]:
    warm = feed_events(settings, 32, seed=3, image_base_url=image_url, id_prefix="W")
    stored = len(distinct_ids(warm))
    run_phase("warm-up", settings, worker, warm, stored, services, options.timeout_s)
    idle = measure_idle(worker, services, options.idle_s)
    feed = feed_events(settings, options.products, seed=5, image_base_url=image_url, id_prefix="")
    stored += len(distinct_ids(feed))
    raw_profile = workdir / "worker-profile.txt" if options.profile else None
    with profiling(worker.pid, raw_profile):
        e2e = run_phase("end to end", settings, worker, feed, stored, services, options.timeout_s)
    again, retitled = with_changed_titles(feed, options.changed_share, seed=6)
    republish = run_phase(
        "re-published, 90% unchanged",
        settings,
        worker,
        again,
        stored,
        services,
        options.timeout_s,
        arrivals=retitled,
    )
    paced = feed_events(
        settings, options.latency_products, seed=7, image_base_url=image_url, id_prefix="L"
    )
    paced = list({e["product_id"]: e for e in paced}.values())  # new products only
    stored += len(paced)
    rate = max(1.0, options.latency_load * e2e.products_per_s)
    latency = measure_latency(settings, worker, paced, rate, stored)
    return {
        "end_to_end": e2e,
        "republish": republish,
        "latency": latency,
        "idle": idle,
        "ids": distinct_ids(feed),
        "profile": profile_summary(raw_profile) if raw_profile and raw_profile.exists() else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = PipelineOptions()
    parser.add_argument("--products", type=int, default=defaults.products)
    parser.add_argument("--latency-products", type=int, default=defaults.latency_products)
    parser.add_argument("--latency-load", type=float, default=defaults.latency_load)
    parser.add_argument("--naive-products", type=int, default=defaults.naive_products)
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker (pip install py-spy)"
    )
    parser.add_argument(
        "--sinks-in-worker",
        action="store_true",
        help="run the sinks inside the worker (`worker --sinks`) instead of as their own processes",
    )
    parser.add_argument(
        "--workers",
        type=_worker_counts,
        default=[1],
        help="worker processes in one consumer group; several (e.g. 1,2,4) run the bench "
        f"once for each, over {SCALE_PARTITIONS} partitions, and add a scaling table",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the run's topics, index and collection (deleted by default: what a run "
        "leaves on noida-db makes the next run's broker slower)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "pipeline.json")
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "pipeline-work")
    args = parser.parse_args(argv)
    options = PipelineOptions(
        products=args.products,
        latency_products=args.latency_products,
        latency_load=args.latency_load,
        naive_products=args.naive_products,
        profile=args.profile,
        sinks_in_worker=args.sinks_in_worker,
        workers=args.workers[0],
        keep_data=args.keep_data,
    )
    settings = load_settings()
    if len(args.workers) == 1:
        report = run_pipeline_bench(settings, args.workdir, options)
        write_json(asdict(report), args.out)
        print(report.table())
        print(f"\nJSON: {args.out}")
        return 0
    # Scale-out: the same bench with 1, 2, 4 ... workers, each its own static member.
    settings = settings.model_copy(update={"topic_partitions": SCALE_PARTITIONS})
    reports = []
    for count in args.workers:
        report = run_pipeline_bench(
            settings, args.workdir / f"workers-{count}", replace(options, workers=count)
        )
        print(f"\n### {count} worker process(es)\n\n{report.table()}")
        reports.append(report)
    write_json({"scaling": [asdict(r) for r in reports]}, args.out)
    print(f"\n{scaling_table(reports)}\n\nJSON: {args.out}")
    return 0


SCALE_PARTITIONS = 8


def _worker_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give worker counts of at least 1, e.g. 1,2,4")
    return counts


def scaling_table(reports: Sequence[PipelineReport]) -> str:
    """One row per worker count: throughput, ratios and CPU per product of the workers."""
    lines = [
        "| workers | end to end (products/s) | ÷ Triton-only | publish → last prediction "
        "(products/s) | CPU/product, all workers | CPU/product outside Triton |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        cpu = report.cpu_ms_per_product()
        workers_ms = sum(v for k, v in cpu.items() if k.startswith("worker"))
        outside = sum(v for k, v in cpu.items() if k != "triton")
        e2e = report.end_to_end
        lines.append(
            f"| {report.settings['options']['workers']} | {e2e.products_per_s:,.1f} | "
            f"{report.ratio_to_ceiling:.2f} | {e2e.predicted_products_per_s:,.1f} | "
            f"{workers_ms:,.1f} ms | {outside:,.1f} ms |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
