"""Normaliser throughput end to end through the broker, next to the broker's raw consume rate.

    .venv/bin/python -m bench.normalise_bench [--products 20000] [--out FILE.json]

Against the running local stack (``catstream stack up``; ``CATSTREAM_HOME`` picks
which), in fresh topics of its own:

1. generates a messy feed of ``--products`` rows and publishes it to
   ``products.raw`` (publish rate reported too);
2. **broker raw consume**: a confluent-kafka consumer (librdkafka, as the sinks
   use) and an aiokafka consumer (the client Faust uses) each read those raw
   messages from the beginning; rate = messages / (last − first receive time);
3. **normalise in process**: decode + validate + normalise + fingerprint + JSON
   encode of the same raw bytes in a loop, no Kafka;
4. **normalise through the broker**: ``catstream worker --agents normalise`` is
   started on the already-published topic, with ``CATSTREAM_REFRESH_IDENTICAL=true``
   so that every event has an output (the feed repeats products); rate = outputs (normalised + dead
   letters) / (last − first output message timestamp), so worker start-up is
   not counted. The worker's CPU seconds give a load-independent events/CPU-s.

The machine may be shared: the report carries the load average. Prints a
markdown table and writes JSON. The helpers at the top (worker process, /proc
readers, topic readers) are shared with ``bench.pipeline_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from catstream.errors import InvalidMessage
from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.settings import PROJECT_ROOT, Settings, load_settings
from feeds.generator import GenerateOptions, generate_feed
from feeds.publisher import publish_feed
from normaliser import fingerprint, normalise_product
from streams.raw_decoding import decode_raw_product
from streams.topics import create_topics

log = get_logger(__name__)

RESULTS_DIR = PROJECT_ROOT / "bench-results"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the machine and its processes (Linux /proc) -------------------------------------------
def machine() -> dict[str, Any]:
    """What a reader needs to judge the numbers: cores, load, Python."""
    return {
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while we were scanning
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.extend(children)
        frontier.extend(children)
    return tree


@dataclass
class ProcessPeak:
    """Peak RSS and CPU seconds of a process tree (a service with its helper processes)."""

    name: str
    pids: list[int]
    peak_rss_mib: float  # sum of the processes' VmHWM: what the service held at most
    largest_process_rss_mib: float
    cpu_s: float

    @classmethod
    def of(cls, name: str, root: int) -> ProcessPeak:
        pids = descendants(root)
        peaks = [peak_rss_bytes(p) for p in pids]
        return cls(
            name=name,
            pids=pids,
            peak_rss_mib=round(sum(peaks) / 2**20, 1),
            largest_process_rss_mib=round(max(peaks, default=0) / 2**20, 1),
            cpu_s=round(sum(cpu_seconds(p) for p in pids), 2),
        )


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu_seconds(p) for p in descendants(root))


# --- where the worker's time goes (py-spy) ------------------------------------------------------
# Innermost recognised frame wins: a sample in json.loads called from faust is JSON.
PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON and pydantic (de)serialisation", ("json/", "pydantic", "orjson")),
    ("Triton client (gRPC, protobuf, numpy)", ("tritonclient", "grpc", "protobuf", "numpy")),
    ("image fetch (aiohttp)", ("streams/images.py", "aiohttp", "yarl")),
    ("Milvus sink", ("pymilvus", "milvus")),
    ("Elasticsearch sink", ("elasticsearch", "elastic_transport", "urllib3")),
    ("sink loop (confluent-kafka)", ("workers/",)),
    ("normaliser", ("normaliser", "streams/raw_decoding")),
    ("catstream agents and steps (streams/, catstream/)", ("streams/", "catstream/")),
    ("Kafka client (aiokafka)", ("aiokafka", "kafka/")),
    ("Faust and mode (streams, tables, commits)", ("faust", "mode/")),
    ("asyncio event loop", ("asyncio", "selectors.py")),
)


# Samples per second. A 20 s end-to-end phase at 50 gave ~130 GIL samples, too few to
# rank the infer agent's costs; py-spy's own CPU at 200 is what a profiled run already
# pays in distorted rates (quote shares from it, not products/s).
PROFILE_RATE_HZ = 200


@contextmanager
def profiling(pid: int, raw_out: Path | None) -> Iterator[None]:
    """py-spy samples of ``pid`` (GIL holders only: Python CPU time) while the block runs."""
    if raw_out is None:
        yield
        return
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        *("record", "--pid", str(pid), "--rate", str(PROFILE_RATE_HZ), "--gil", "--nonblocking"),
        *("--format", "raw", "--output", str(raw_out)),
    ]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(60)


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):  # leaf first
        for name, markers in PROFILE_CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def profile_summary(raw: Path, top: int = 15) -> dict[str, Any]:
    """Shares of samples by component and the hottest leaf functions, from py-spy raw output."""
    by_category: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        by_category[_category(frames)] += int(count)
        by_leaf[frames[-1]] += int(count)
    total = sum(by_category.values()) or 1
    return {
        "samples": total,
        "by_component": {k: round(v / total, 3) for k, v in by_category.most_common()},
        "top_leaf_functions": {k: round(v / total, 3) for k, v in by_leaf.most_common(top)},
    }


# --- the worker under test ---------------------------------------------------------------------
class BenchWorker:
    """``catstream worker ARGS`` (or another ``command``) as a child process with its own log."""

    def __init__(
        self, settings: Settings, log_path: Path, *args: str, command: str = "worker"
    ) -> None:
        self.settings, self.log_path, self.args = settings, log_path, list(args)
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.peak: ProcessPeak | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "start the worker first"
        return self.process.pid

    def start(self, *python_args: str) -> BenchWorker:
        env = {**os.environ, **self.settings.as_env(), "CATSTREAM_LOG_FORMAT": "json"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *python_args, "-m", "catstream.cli", self.command, *self.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"the worker exited with {self.process.returncode}; read {self.log_path}"
            )

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (SIGKILL after ``timeout_s``); records the peak RSS first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.peak = ProcessPeak.of(" ".join([self.command, *self.args]), self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextmanager
def running_worker(settings: Settings, log_path: Path, *args: str) -> Iterator[BenchWorker]:
    worker = BenchWorker(settings, log_path, *args).start()
    try:
        yield worker
    finally:
        worker.stop()


def bench_settings(settings: Settings, label: str) -> Settings:
    """``settings`` with topics, index, collection and app id of this run alone."""
    run = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "topic_prefix": f"{run}.",
            "app_id": run,
            "elasticsearch_index": run,
            "milvus_collection": run,
        }
    )


# --- reading topics ----------------------------------------------------------------------------
def _consumer(settings: Settings, **extra: Any) -> Consumer:
    config = {
        "group.id": f"bench-reader-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        **extra,
    }
    return Consumer(librdkafka_config(settings, **config))


def end_offsets(settings: Settings, topic_keys: Sequence[str]) -> int:
    """Messages in these topics so far (sum of high watermarks; topics are never compacted)."""
    consumer = _consumer(settings)
    try:
        total = 0
        for key in topic_keys:
            topic = settings.topic(key)
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            for partition in partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
                total += high
        return total
    finally:
        consumer.close()


@dataclass(frozen=True)
class TimedRecord:
    key: str | None
    timestamp_ms: int
    value: bytes | None


def read_all(settings: Settings, topic_key: str, timeout_s: float = 300.0) -> list[TimedRecord]:
    """Every record of a topic, from the beginning up to its end when called.

    Partitions are assigned (no group join) and read up to the high watermarks
    taken at the start, so the result is exact and nothing waits for idleness.
    """
    topic = settings.topic(topic_key)
    consumer = _consumer(settings)
    ends: dict[int, int] = {}
    starts = []
    for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, low))
    consumer.assign(starts)
    records: list[TimedRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                key = message.key()
                records.append(
                    TimedRecord(
                        key=key.decode("utf-8", "replace") if key is not None else None,
                        timestamp_ms=message.timestamp()[1],
                        value=message.value(),
                    )
                )
                partition, offset = message.partition() or 0, message.offset() or 0
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
    finally:
        consumer.close()
    if ends:
        raise RuntimeError(f"could not read {topic} to its end in {timeout_s:.0f}s; is Kafka up?")
    return records


def wait_for_offsets(
    settings: Settings,
    topic_keys: Sequence[str],
    target: int,
    timeout_s: float,
    worker: BenchWorker | None = None,
    every_s: float = 1.0,
) -> int:
    """Wait until the topics hold ``target`` messages; returns how many they hold."""
    deadline = time.monotonic() + timeout_s
    count = end_offsets(settings, topic_keys)
    while count < target and time.monotonic() < deadline:
        if worker is not None:
            worker.check_alive()
        time.sleep(every_s)
        count = end_offsets(settings, topic_keys)
    return count


def span_rate(count: int, first: float, last: float) -> float:
    """Events per second between the first and last event (``count`` events in all)."""
    return round(count / (last - first), 1) if last > first else 0.0


# --- the feed --------------------------------------------------------------------------------
def publish_generated_feed(
    settings: Settings,
    workdir: Path,
    products: int,
    seed: int,
    image_base_url: str | None = None,
    corrupt_fraction: float = 0.0,
) -> tuple[Path, int, float]:
    """Generate and publish a feed; returns its path, messages sent, and publish seconds."""
    feed = workdir / f"feed-{seed}.jsonl"
    options = GenerateOptions(
        products=products,
        network="generic",
        seed=seed,
        fmt="jsonl",
        corrupt_fraction=corrupt_fraction,
        image_base_url=image_base_url,
        taxonomy_path=settings.taxonomy_path,
    )
    with feed.open("wb") as out:
        generate_feed(options, out)
    report = publish_feed(feed, "generic", settings, progress=False)
    if report.failed:
        raise RuntimeError(f"{report.failed} messages were not delivered: {report.failures[:3]}")
    return feed, report.sent, report.seconds


# --- the measurements -----------------------------------------------------------------------
@dataclass
class ConsumeResult:
    client: str
    messages: int
    seconds: float
    msgs_per_s: float
    cpu_s: float
    msgs_per_cpu_s: float


_BATCH = 100  # small, so the uncounted first batch is a small share of the messages


@dataclass
class _SpanClock:
    """First-to-last timing of batched receives, like the normaliser's first-to-last output.

    The clock starts when the first batch arrives (connection, offset lookup and
    the first fetch round trip are start-up, as the worker's start-up is), so the
    first batch is not counted; CPU seconds are this process's, all threads.
    """

    count: int = 0
    counted: int = 0
    first: float = 0.0
    last: float = 0.0
    cpu_first: float = 0.0
    cpu_last: float = 0.0

    def batch(self, size: int) -> None:
        if not size:
            return
        now, cpu = time.perf_counter(), time.process_time()
        if not self.count:
            self.first, self.cpu_first = now, cpu
        else:
            self.counted += size
        self.count += size
        self.last, self.cpu_last = now, cpu

    def result(self, client: str) -> ConsumeResult:
        cpu_s = self.cpu_last - self.cpu_first
        return ConsumeResult(
            client=client,
            messages=self.count,
            seconds=round(self.last - self.first, 3),
            msgs_per_s=span_rate(self.counted, self.first, self.last),
            cpu_s=round(cpu_s, 3),
            msgs_per_cpu_s=round(self.counted / cpu_s, 1) if cpu_s > 0 else 0.0,
        )


def _raw_partitions(settings: Settings) -> list[int]:
    topic = settings.topic("raw")
    consumer = _consumer(settings)
    try:
        return sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        consumer.close()


def confluent_consume(settings: Settings, expected: int) -> tuple[ConsumeResult, list[Any]]:
    """librdkafka consumer from the beginning; also returns the (key, value) pairs read.

    The clock starts at the first fetch, after the connection and the partition
    assignment are made, and stops at the last message: the same span the
    normaliser is measured over (its first to last output).
    """
    topic = settings.topic("raw")
    consumer = _consumer(settings, **{"fetch.max.bytes": 52_428_800})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in _raw_partitions(settings)])
    consumer.list_topics(topic, timeout=10)  # connected before the clock starts
    pairs: list[Any] = []
    clock = _SpanClock()
    deadline = time.monotonic() + 300
    try:
        while len(pairs) < expected and time.monotonic() < deadline:
            # Never ask for more than are left: a short batch would wait out the timeout.
            batch = consumer.consume(min(_BATCH, expected - len(pairs)), 1.0)
            pairs.extend((m.key(), m.value()) for m in batch if m.error() is None)
            clock.batch(len(batch))
    finally:
        consumer.close()
    return clock.result("confluent-kafka"), pairs


async def _aiokafka_consume(settings: Settings, expected: int) -> ConsumeResult:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioPartition

    topic = settings.topic("raw")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    partitions = [AioPartition(topic, p) for p in _raw_partitions(settings)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    clock = _SpanClock()
    deadline = time.monotonic() + 300
    try:
        while clock.count < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=_BATCH)
            clock.batch(sum(len(records) for records in batches.values()))
    finally:
        await consumer.stop()
    return clock.result("aiokafka")


def aiokafka_consume(settings: Settings, expected: int) -> ConsumeResult:
    return asyncio.run(_aiokafka_consume(settings, expected))


@dataclass
class InProcessResult:
    events: int
    dead_letters: int
    seconds: float
    events_per_s: float
    cpu_s: float
    events_per_cpu_s: float


def normalise_in_process(settings: Settings, pairs: list[Any]) -> InProcessResult:
    """The agent's per-event work without Kafka: decode, normalise, fingerprint, encode."""
    dead = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for key, value in pairs:
        try:
            raw = decode_raw_product(key, value, settings.max_message_bytes)
        except InvalidMessage:
            dead += 1
            continue
        if raw.op == "delete":
            continue
        product = normalise_product(raw, max_chars=settings.field_max_chars)
        digest = fingerprint(product, settings.categorisation_fields)
        product.model_copy(update={"fingerprint": digest}).model_dump_json().encode()
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    return InProcessResult(
        events=len(pairs),
        dead_letters=dead,
        seconds=round(seconds, 3),
        events_per_s=round(len(pairs) / seconds, 1),
        cpu_s=round(cpu_s, 3),
        events_per_cpu_s=round(len(pairs) / cpu_s, 1) if cpu_s > 0 else 0.0,
    )


@dataclass
class StreamResult:
    events: int
    normalised: int
    dead_letters: int
    first_to_last_s: float
    events_per_s: float
    worker_cpu_s: float
    events_per_worker_cpu_s: float
    worker_wall_s: float  # worker start to last output, start-up included


def normalise_through_broker(
    settings: Settings, workdir: Path, expected: int, raw_profile: Path | None = None
) -> StreamResult:
    outputs = ("normalised", "deadletter")
    # The feed repeats products: the agent publishes nothing for a record identical to
    # the last one it published, so without this the outputs never reach ``expected``
    # and the in-process loop (which encodes every event) would not be the same work.
    settings = settings.model_copy(update={"refresh_identical": True})
    started = time.monotonic()
    with running_worker(settings, workdir / "normalise-worker.log", "--agents", "normalise") as w:
        wait_for_offsets(settings, outputs, 1, 300, w, every_s=0.2)
        cpu_at_first = tree_cpu_seconds(w.pid)
        with profiling(w.pid, raw_profile):
            got = wait_for_offsets(settings, outputs, expected, 1800, w)
        cpu_s = tree_cpu_seconds(w.pid) - cpu_at_first
        wall = time.monotonic() - started
    if got < expected:
        raise RuntimeError(
            f"only {got} of {expected} events came out of the normaliser in 30 min; "
            f"read {workdir / 'normalise-worker.log'}"
        )
    normalised = read_all(settings, "normalised")
    dead = read_all(settings, "deadletter")
    stamps = [r.timestamp_ms / 1000 for r in normalised + dead]
    first, last = min(stamps), max(stamps)
    events = len(stamps)
    return StreamResult(
        events=events,
        normalised=len(normalised),
        dead_letters=len(dead),
        first_to_last_s=round(last - first, 3),
        events_per_s=span_rate(events, first, last),
        worker_cpu_s=round(cpu_s, 2),
        events_per_worker_cpu_s=round(events / cpu_s, 1) if cpu_s else 0.0,
        worker_wall_s=round(wall, 1),
    )


@dataclass
class NormaliseReport:
    products: int
    published: int
    publish_s: float
    publish_msgs_per_s: float
    broker_consume: list[ConsumeResult]
    in_process: InProcessResult
    through_broker: StreamResult
    profile: dict[str, Any] | None = None
    machine_before: dict[str, Any] = field(default_factory=dict)
    machine_after: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        through, local = self.through_broker, self.in_process
        rows: list[tuple[str, float, float | None, str]] = [
            ("publish (confluent-kafka producer, lz4)", self.publish_msgs_per_s, None, "msgs"),
            *(
                (f"broker raw consume, {c.client}", c.msgs_per_s, c.msgs_per_cpu_s, "msgs")
                for c in self.broker_consume
            ),
            (
                "normalise in process (no Kafka)",
                local.events_per_s,
                local.events_per_cpu_s,
                "events",
            ),
            (
                "normalise through the broker (worker)",
                through.events_per_s,
                through.events_per_worker_cpu_s,
                "events",
            ),
        ]
        lines = ["| measurement | per second | per CPU-second | unit |", "|---|---:|---:|---|"]
        lines += [
            f"| {name} | {rate:,.0f} | {'' if cpu is None else f'{cpu:,.0f}'} | {unit} |"
            for name, rate, cpu, unit in rows
        ]
        load = self.machine_before.get("load_average")
        lines.append(
            f"\n{self.published} messages, {self.machine_before.get('cpus')} CPUs, "
            f"load average before the run: {load}"
        )
        if self.profile:
            shares = ", ".join(
                f"{name} {share:.0%}" for name, share in self.profile["by_component"].items()
            )
            lines.append(f"\nWorker Python CPU by component (py-spy, GIL samples): {shares}.")
        return "\n".join(lines)


def run_normalise_bench(
    settings: Settings, workdir: Path, products: int, profile: bool = False
) -> NormaliseReport:
    """The whole normaliser benchmark in fresh topics of its own."""
    settings = bench_settings(settings, "normalise")
    workdir.mkdir(parents=True, exist_ok=True)
    before = machine()
    create_topics(settings)
    _, sent, publish_s = publish_generated_feed(settings, workdir, products, seed=20)
    librdkafka, pairs = confluent_consume(settings, sent)
    aiokafka = aiokafka_consume(settings, sent)
    in_process = normalise_in_process(settings, pairs)
    raw_profile = workdir / "normalise-worker-profile.txt" if profile else None
    through = normalise_through_broker(settings, workdir, sent, raw_profile)
    return NormaliseReport(
        products=products,
        published=sent,
        publish_s=round(publish_s, 3),
        publish_msgs_per_s=round(sent / publish_s, 1) if publish_s else 0.0,
        broker_consume=[librdkafka, aiokafka],
        in_process=in_process,
        through_broker=through,
        profile=profile_summary(raw_profile) if raw_profile and raw_profile.exists() else None,
        machine_before=before,
        machine_after=machine(),
    )


def write_json(payload: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker (pip install py-spy)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "normalise.json")
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "normalise-work")
    args = parser.parse_args(argv)
    report = run_normalise_bench(load_settings(), args.workdir, args.products, args.profile)
    write_json(asdict(report), args.out)
    print(report.table())
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
