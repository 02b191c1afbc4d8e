"""Hostile input through the broker: nothing crashes, wedges or leaks (issue 8).

Over fifty kinds of malformed ``products.raw`` message (tests/integration/
hostile_messages.py), a few of them sent with Debian's kcat, are shuffled in
with 10,000 random garbage messages and a few hundred valid products on the
same partitions, while a real ``catstream worker --sinks --api`` runs. Then:

* the worker process stayed up and its log shows no crashed or restarted agent;
* every bad message has exactly one dead letter with a reason, matched to its
  source partition and offset, small enough for the topic (a cut original
  records its length and sha256);
* every valid product is predicted and in Milvus and Elasticsearch, and nothing
  else is (a crafted delete id wipes nothing);
* every consumer group's committed offsets reach the end of every partition.

All failures are collected and reported together, so one run shows every gap.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from catstream.settings import Settings
from streams.topics import create_topics
from tests.integration.hostile_messages import (
    HostileMessage,
    garbage,
    kcat_cases,
    named_cases,
    valid_products,
)
from tests.integration.pipeline_checks import (
    RawRecord,
    crash_lines,
    elasticsearch_docs,
    ensure_categoriser,
    lagging_partitions,
    latest_json_by_key,
    milvus_rows,
    produce_all,
    produce_with_kcat,
    read_all,
    wait_for,
)
from tests.integration.running_worker import WorkerProcess

SEED = 8
GARBAGE = 10_000
VALID = 300
CATCH_UP_S = 420.0
# An original longer than this is expected to be cut in its dead letter (length + sha256).
CUT_ABOVE_BYTES = 700_000


@pytest.fixture
def settings(topic_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    ensure_categoriser(topic_settings, tmp_path_factory.mktemp("categoriser"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return topic_settings.model_copy(update={"worker_web_port": port})


def _health(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.worker_web_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(json.load(response)["status"])
    except urllib.error.HTTPError as error:
        return str(json.load(error).get("status"))
    except OSError:
        return "unreachable"


def _publish(settings: Settings, messages: list[HostileMessage], workdir: Path) -> None:
    """confluent-kafka for most, kcat for its cases, interleaved in three rounds."""
    by_client = [m for m in messages if not m.via_kcat]
    by_kcat = [(m.key or b"", m.value or b"") for m in messages if m.via_kcat]
    assert len(by_kcat) >= 5, "the kcat cases are missing"
    half = len(by_client) // 2
    produce_all(settings, ((m.key, m.value) for m in by_client[:half]))
    produce_with_kcat(settings, by_kcat, workdir)
    produce_all(settings, ((m.key, m.value) for m in by_client[half:]))


def _expectations(
    messages: list[HostileMessage], records: list[RawRecord]
) -> list[tuple[RawRecord, HostileMessage]]:
    """Each raw record with the message it came from (matched by key and value bytes)."""
    by_bytes: dict[tuple[bytes | None, bytes | None], HostileMessage] = {}
    for message in messages:
        seen = by_bytes.setdefault((message.key, message.value), message)
        assert seen.expect == message.expect, f"{seen.kind} and {message.kind} are the same bytes"
    matched = []
    for record in records:
        found = by_bytes.get((record.key, record.value))
        assert found is not None, f"unknown record at {record.partition}:{record.offset}"
        matched.append((record, found))
    return matched


@pytest.mark.timeout(900)
def test_hostile_input_is_dead_lettered_once_and_nothing_wedges(
    settings: Settings, tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    prefix = f"h{rng.getrandbits(24):x}"
    named = named_cases(prefix) + kcat_cases(prefix)
    valid = valid_products(prefix, rng, VALID)
    messages = named + list(garbage(rng, GARBAGE)) + valid
    rng.shuffle(messages)

    create_topics(settings)
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log_path, "--sinks", "--api").start()
    failures: list[str] = []
    try:
        _publish(settings, messages, tmp_path / "kcat")
        records = read_all(settings, "raw")
        assert len(records) == len(messages), f"{len(records)} raw records for {len(messages)}"
        matched = _expectations(messages, records)
        must_be_stored = {m.product_id for m in valid} | {
            m.product_id for m in named if m.expect == "product"
        }

        def caught_up() -> bool:
            assert worker.alive(), "the worker exited:\n" + worker.log_tail()
            return not lagging_partitions(settings)

        if not wait_for(caught_up, CATCH_UP_S, every_s=5):
            failures.append(
                f"consumer groups did not reach the end of every partition in {CATCH_UP_S:.0f}s: "
                + "; ".join(lagging_partitions(settings))
            )
        failures += _check_process(worker, log_path, settings)
        checks: list[Callable[[], list[str]]] = [
            lambda: _check_dead_letters(settings, matched),
            lambda: _check_outputs(settings, matched, must_be_stored),
        ]
        for check in checks:
            try:
                failures += check()
            except Exception as exc:  # report it with the other failures
                failures.append(f"a check could not read its data: {exc!r}"[:600])
    finally:
        worker.stop()
    print(f"hostile suite: {len(messages)} messages, {time.monotonic() - started:.0f}s")
    tail = "\n".join(line[:300] for line in worker.log_tail(30).splitlines())
    assert not failures, "\n".join(failures) + "\n--- worker log tail ---\n" + tail


def _check_process(worker: WorkerProcess, log_path: Path, settings: Settings) -> list[str]:
    failures = []
    if not worker.alive():
        failures.append(
            f"the worker process exited with {worker.process and worker.process.poll()}"
        )
    if crashed := crash_lines(log_path):
        failures.append("the worker log shows crashed/restarted agents:\n  " + "\n  ".join(crashed))
    if (health := _health(settings)) != "ready":
        failures.append(f"/health says {health!r} after the hostile input, not 'ready'")
    return failures


def _check_dead_letters(
    settings: Settings, matched: list[tuple[RawRecord, HostileMessage]]
) -> list[str]:
    raw_topic = settings.topic("raw")
    letters: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    downstream: list[str] = []
    oversized: list[str] = []
    for record in read_all(settings, "deadletter"):
        assert record.value is not None, "a dead letter without a value"
        if len(record.value) > settings.max_message_bytes:
            oversized.append(f"{record.partition}:{record.offset} is {len(record.value):,} bytes")
        letter = json.loads(record.value)
        if letter.get("source_topic") == raw_topic:
            letters[(letter["partition"], letter["offset"])].append(letter)
        else:
            downstream.append(
                f"{letter.get('stage')} {letter.get('error_class')}: {letter.get('reason')}"[:200]
            )
    failures = []
    if oversized:
        failures.append(f"dead letters over the message limit: {oversized}")
    if downstream:
        failures.append(f"{len(downstream)} dead letters from later stages: {downstream[:5]}")
    missing: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    no_reason: Counter[str] = Counter()
    bugs: list[str] = []
    not_cut: list[str] = []
    not_original: list[str] = []
    for record, message in matched:
        found = letters.get((record.partition, record.offset), [])
        if message.expect in ("product", "delete") and found:
            unexpected[f"{message.kind}: {found[0].get('reason', '')[:120]}"] += 1
        if message.expect == "dead_letter" and not found:
            missing[message.kind] += 1
        if len(found) > 1:
            duplicated[message.kind] += 1
        for letter in found[:1]:
            if not str(letter.get("reason", "")).strip():
                no_reason[message.kind] += 1
            if letter.get("error_class") == "ProcessingBug":
                bugs.append(f"{message.kind}: {letter.get('reason', '')[:160]}")
            _check_original(record, message, letter, not_cut, not_original)
    for label, counter in (
        ("bad messages without a dead letter", missing),
        ("messages dead-lettered more than once", duplicated),
        ("valid messages dead-lettered", unexpected),
        ("dead letters without a reason", no_reason),
    ):
        if counter:
            failures.append(f"{label} ({sum(counter.values())}): {dict(counter.most_common(40))}")
    if bugs:
        failures.append(
            f"hostile messages dead-lettered as ProcessingBug (a crash, not a reason): {bugs}"
        )
    if not_cut:
        failures.append(f"big originals not cut with length+sha256: {not_cut}")
    if not_original:
        failures.append(f"dead letters not carrying the original bytes: {not_original[:5]}")
    return failures


def _check_original(
    record: RawRecord,
    message: HostileMessage,
    letter: dict[str, Any],
    not_cut: list[str],
    not_original: list[str],
) -> None:
    value = record.value or b""
    if len(value) > CUT_ABOVE_BYTES:
        text = json.dumps(letter)
        if hashlib.sha256(value).hexdigest() not in text or str(len(value)) not in text:
            not_cut.append(message.kind)
    elif "original_b64" in letter and base64.b64decode(letter["original_b64"]) != value:
        not_original.append(message.kind)


def _check_outputs(
    settings: Settings,
    matched: list[tuple[RawRecord, HostileMessage]],
    must_be_stored: set[str | None],
) -> list[str]:
    failures = []
    normalised = latest_json_by_key(settings, "normalised")
    predictions = latest_json_by_key(settings, "predictions")
    in_milvus = set(milvus_rows(settings))
    in_elasticsearch = set(elasticsearch_docs(settings))
    dead_lettered_at = {
        (letter["partition"], letter["offset"])
        for letter in (json.loads(r.value or b"{}") for r in read_all(settings, "deadletter"))
        if letter.get("source_topic") == settings.topic("raw")
    }
    accepted: set[str | None] = set(must_be_stored)
    for record, message in matched:
        if message.expect == "either" and (record.partition, record.offset) not in dead_lettered_at:
            accepted.add(message.product_id)  # not rejected: then it must be a full product
        if message.expect == "delete":
            event = normalised.get(message.product_id or "")
            if not event or event.get("op") != "delete":
                failures.append(f"{message.kind}: no normalised delete for {message.product_id!r}")
    accepted.discard(None)
    for name, where in (
        ("normalised", {k for k, v in normalised.items() if v and v.get("op") != "delete"}),
        ("predicted", {k for k, v in predictions.items() if v is not None}),
        ("in Milvus", in_milvus),
        ("in Elasticsearch", in_elasticsearch),
    ):
        absent = sorted(str(p) for p in accepted - where)
        if absent:
            failures.append(f"{len(absent)} valid products not {name}: {absent[:8]}")
        extra = sorted(where - accepted)
        if extra and name != "normalised":
            failures.append(f"{len(extra)} unexpected products {name}: {extra[:8]}")
    return failures
