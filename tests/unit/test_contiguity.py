"""Partition contiguity on an in-memory consumer: every offset once, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from streams.contiguity import PartitionContiguity
from tests.unit.stream_harness import TP, MemoryConsumer

TP0 = TP("products.raw", 0)


def _admit(contiguity: PartitionContiguity, consumer: MemoryConsumer, *offsets: int) -> list[bool]:
    async def run() -> list[bool]:
        return [await contiguity.admit(consumer, TP0, offset) for offset in offsets]

    return asyncio.run(run())


def test_without_a_commit_the_partition_starts_at_its_earliest_offset() -> None:
    contiguity, consumer = PartitionContiguity("normalise"), MemoryConsumer(earliest=5)
    assert _admit(contiguity, consumer, 5, 6, 7) == [True, True, True]
    assert consumer.seeks == []
    assert consumer._committed_offset[TP0] == 5  # faust commits only a run from there


def test_an_unknown_commit_never_starts_the_run_at_whatever_record_arrives() -> None:
    # Chaos run: after a broker restart faust knew no committed offset for a partition;
    # the first record to arrive (hundreds past the real commit) started the run, faust
    # committed it, and the records in between were never handled.
    contiguity, consumer = PartitionContiguity("infer"), MemoryConsumer(earliest=0)
    assert _admit(contiguity, consumer, 740, 741) == [False, False]
    assert consumer.seeks == [(TP0, 0)]  # handled again from the start: at least once
    assert _admit(contiguity, consumer, 0, 1) == [True, True]


def test_a_commit_faust_forgot_is_read_back_from_the_broker() -> None:
    # Suite run: after a quick second rebalance faust had no committed offset for a
    # partition the group had committed at 10. Starting at the earliest offset made the
    # restarted normalise worker publish its first feed again.
    contiguity = PartitionContiguity("normalise")
    consumer = MemoryConsumer(earliest=0, broker_commits={TP0: 10})
    assert _admit(contiguity, consumer, 10, 11) == [True, True]
    assert consumer.seeks == []
    assert consumer._committed_offset[TP0] == 10


def test_the_committed_offset_is_the_next_one_to_handle_and_duplicates_are_dropped() -> None:
    contiguity = PartitionContiguity("normalise")
    consumer = MemoryConsumer(_committed_offset={TP0: 10})
    assert _admit(contiguity, consumer, 8, 9, 10, 10, 11) == [False, False, True, False, True]


def test_a_hole_seeks_back_and_waits_for_the_missing_record() -> None:
    contiguity = PartitionContiguity("normalise", reseek_after_s=3600)
    consumer = MemoryConsumer(_committed_offset={TP0: 0})
    assert _admit(contiguity, consumer, 0, 2, 3) == [True, False, False]
    assert consumer.seeks == [(TP0, 1)]  # once: records queued behind the hole are ignored
    assert _admit(contiguity, consumer, 1, 2) == [True, True]


def test_a_hole_that_stays_after_every_refetch_is_accepted() -> None:
    contiguity = PartitionContiguity("normalise", reseek_after_s=0, max_refetches=2)
    consumer = MemoryConsumer(_committed_offset={TP0: 0})
    assert _admit(contiguity, consumer, 0, 3, 3, 3) == [True, False, False, True]
    assert consumer.seeks == [(TP0, 1), (TP0, 1)]
    assert _admit(contiguity, consumer, 4) == [True]


def test_revoked_partitions_start_again_from_the_commit() -> None:
    contiguity = PartitionContiguity("normalise")
    consumer = MemoryConsumer(_committed_offset={TP0: 0})
    assert _admit(contiguity, consumer, 0, 1) == [True, True]
    contiguity.forget({TP0})
    consumer._committed_offset[TP0] = 1
    assert _admit(contiguity, consumer, 1) == [True]


def test_a_refetch_that_never_arrives_is_sought_again_then_stops_the_process() -> None:
    # Chaos run: after a rebalance the agent sought back over a hole and the stream never
    # delivered again; nothing noticed, and the partition's committed offset froze.
    contiguity = PartitionContiguity("infer", reseek_after_s=15, stall_limit_s=180)
    consumer = MemoryConsumer(_committed_offset={TP0: 606})
    assert _admit(contiguity, consumer, 640) == [False]
    assert consumer.seeks == [(TP0, 606)]
    start = contiguity.waiting_since[TP0]

    async def watch(at: float) -> str | None:
        return await contiguity.watch(consumer, now=start + at)

    assert asyncio.run(watch(5)) is None
    assert consumer.seeks == [(TP0, 606)]  # too soon to seek again
    assert asyncio.run(watch(20)) is None
    assert consumer.seeks == [(TP0, 606), (TP0, 606)]  # sought again without an event
    reason = asyncio.run(watch(200))
    assert reason is not None
    assert "offset 606" in reason
    # the timer's seeks never count towards accepting the hole as non-existent
    assert contiguity.refetches[TP0][1] == 1


def test_a_filled_hole_is_no_longer_watched() -> None:
    contiguity = PartitionContiguity("infer", reseek_after_s=15, stall_limit_s=180)
    consumer = MemoryConsumer(_committed_offset={TP0: 0})
    assert _admit(contiguity, consumer, 1, 0) == [False, True]
    assert asyncio.run(contiguity.watch(consumer, now=10**9)) is None


class _ConsumerThread:
    """mode's ``ServiceThread.call_thread``: run a coroutine on a loop in another thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.commits: dict[Any, int] = {}  # aiokafka's committed(), asked on the thread
        self.committed_threads: list[threading.Thread] = []

    def _ensure_consumer(self) -> _ConsumerThread:
        return self  # stands in for the aiokafka consumer this thread owns

    async def committed(self, tp: Any) -> int | None:
        self.committed_threads.append(threading.current_thread())
        return self.commits.get(tp)

    async def call_thread(self, fun: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        future: Any = asyncio.run_coroutine_threadsafe(fun(*args), self.loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class _ThreadedConsumer(MemoryConsumer):
    """Faust's consumer: aiokafka lives on ``_thread``; records where each seek ran."""

    _thread: _ConsumerThread = field(default_factory=_ConsumerThread)
    seek_threads: list[threading.Thread] = field(default_factory=list)

    async def seek(self, tp: Any, offset: int) -> None:
        self.seek_threads.append(threading.current_thread())
        await super().seek(tp, offset)


def test_a_refetch_seeks_on_the_consumer_thread() -> None:
    # Faust's seek mutates aiokafka's fetcher from the caller's thread; run from an
    # agent it raced the consumer thread's fetched_records (KeyError) in a rebalance
    # and crashed the worker's fetcher.
    contiguity = PartitionContiguity("normalise", reseek_after_s=10, stall_limit_s=3600)
    consumer = _ThreadedConsumer(_committed_offset={TP0: 0})
    try:
        assert _admit(contiguity, consumer, 0, 2) == [True, False]  # seeks back for 1
        assert asyncio.run(contiguity.watch(consumer, now=time.monotonic() + 20)) is None
    finally:
        consumer._thread.close()
    assert consumer.seeks == [(TP0, 1), (TP0, 1)]
    assert consumer.seek_threads == [consumer._thread.thread] * 2


def test_the_broker_commit_is_asked_on_the_consumer_thread() -> None:
    contiguity, consumer = PartitionContiguity("infer"), _ThreadedConsumer(earliest=0)
    consumer._thread.commits[TP0] = 7
    try:
        assert _admit(contiguity, consumer, 7) == [True]
    finally:
        consumer._thread.close()
    assert consumer._thread.committed_threads == [consumer._thread.thread]
    assert consumer.seeks == []
