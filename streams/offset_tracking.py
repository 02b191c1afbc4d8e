"""Fixes for faust-streaming 0.15.3's offset bookkeeping, installed at start-up.

We reproduced the reported loss (graceful restarts of the normalise worker lost
a record or two per partition, at committed+1 or +2, right after start: see
``tests/integration/test_normalise_restarts.py``) and found five causes:

0. ``Consumer.getmany`` stops yielding a fetched batch when the consumer
   generation changes mid-batch (a second, quick rebalance is common right
   after a restart with static membership) and silently drops records of
   partitions that are not active at that moment. The fetch position has
   already moved past them, so nothing reads them again and a later commit
   moves past them. :func:`getmany` seeks such partitions back to the first
   dropped record.
1. A stream acks the current event in the ``finally`` of its iterator, i.e.
   also when the agent is *cancelled* mid-event (shutdown, rebalance). Our
   agents iterate ``stream.noack()`` and ack explicitly after the outputs were
   sent.
2. The stream iterator discards records fetched under an older consumer
   generation, and nothing fetches them again. ``streams.contiguity`` catches
   this in the agents: they handle only the next offset of each partition and
   seek back over a hole.
3. The root of the skip after "Worker ready": the fetcher drops any record
   whose offset is below the partition's "read offset" (its duplicate filter).
   After a seek, records prefetched before the seek still arrive first and
   push the read offset ahead, so the re-read records are then dropped as
   "duplicates". :class:`ForgetfulOffsets` disables that filter; the agents'
   contiguity check drops real duplicates instead, by exact offset.
4. ``Consumer._new_offset`` commits a run of acked offsets even when the record
   at the committed offset is still in flight (it tolerates a hole of one).
   :func:`new_offset` only commits a run that starts at the committed offset;
   with (2) the agents ack in offset order, so that run always forms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from faust.transport.consumer import Consumer
from faust.utils.functional import consecutive_numbers

from catstream.logs import get_logger

log = get_logger(__name__)

_installed = False


async def getmany(consumer: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:  # noqa: ASYNC109
    """Upstream ``Consumer.getmany``, but dropped records are fetched again."""
    records, active_partitions = await consumer._wait_next_records(timeout)
    generation_id = consumer.app.consumer_generation_id
    if records is None or consumer.should_stop:
        return
    if not consumer.flow_active:
        # Upstream seeks back to the committed offsets here; so do we.
        await _seek_back(consumer, {tp: batch[0].offset for tp, batch in records.items() if batch})
        return
    dropped: dict[Any, int] = {}
    for tp, record in consumer.scheduler.iterate(records):
        stop = not consumer.flow_active or consumer.app.consumer_generation_id != generation_id
        active = active_partitions is None or tp in active_partitions
        active = active or tp in consumer._buffered_partitions
        if stop or not active or tp in dropped:
            dropped.setdefault(tp, record.offset)
            continue
        consumer.app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
        yield tp, consumer._to_message(tp, record)
    await _seek_back(consumer, dropped)


async def seek(consumer: Any, tp: Any, offset: int) -> None:
    """Faust's ``consumer.seek``, run on the thread that owns the aiokafka consumer.

    Faust runs aiokafka in a thread of its own, but its ``seek`` calls aiokafka's from the
    caller's thread. aiokafka's fetcher then drops a partition's buffered records while the
    consumer thread is iterating them (``Fetcher.fetched_records``: ``KeyError``), and that
    crashed a worker's fetcher in a rebalance (the scale-out test, session 9). A consumer
    with no thread of its own (the unit tests' fakes) is called directly.
    """
    thread = getattr(consumer, "_thread", None)
    if thread is None:
        await consumer.seek(tp, offset)
        return
    await thread.call_thread(consumer.seek, tp, offset)


async def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The group's committed offset for ``tp`` as the broker holds it (None: no commit).

    Asked on the thread that owns the aiokafka consumer, as ``seek`` is; a consumer
    with no thread of its own (the unit tests' fakes) is asked directly.
    """
    thread = getattr(consumer, "_thread", None)
    if thread is None:
        offset = await consumer.committed(tp)
    else:
        offset = await thread.call_thread(thread._ensure_consumer().committed, tp)
    return None if offset is None or offset < 0 else int(offset)


async def _seek_back(consumer: Any, first_dropped: dict[Any, int]) -> None:
    for tp, offset in first_dropped.items():
        try:
            await seek(consumer, tp, offset)
            log.info(
                "refetching_dropped_records", topic=tp.topic, partition=tp.partition, offset=offset
            )
        except Exception as exc:  # revoked meanwhile: the new owner starts at the commit
            log.info("refetch_skipped", topic=tp.topic, partition=tp.partition, error=str(exc))


def new_offset(consumer: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp``, or None when nothing new is safe to commit."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return None
    _fold_in_gaps(consumer, tp, acked)
    acked.sort()
    committed = consumer._committed_offset[tp]
    if committed is not None and acked[0] > committed:
        # The record at the committed offset is not done: committing the run after
        # it would skip it.
        return None
    batch = next(consecutive_numbers(acked))
    del acked[: len(batch)]
    consumer._acked_index[tp].difference_update(batch)
    return int(batch[-1]) + 1


def _fold_in_gaps(consumer: Any, tp: Any, acked: list[int]) -> None:
    """Offsets missing from a compacted topic count as acked (upstream's behaviour)."""
    gaps = consumer._gap[tp]
    if not gaps:
        return
    max_offset = max(acked)
    candidates = sorted(gaps.overlap(0, max_offset), key=lambda interval: interval.begin)
    if not candidates:
        return
    filled: list[int] = []
    for interval in candidates:
        filled.extend(range(interval.begin, interval.end))
    acked.extend(filled)
    gaps.chop(0, max(filled[-1], max_offset + 1))


class ForgetfulOffsets(dict[Any, int | None]):
    """A read-offset map that remembers nothing, so the fetcher never drops a record."""

    def __getitem__(self, key: Any) -> int | None:
        return None

    def __setitem__(self, key: Any, value: int | None) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


_upstream_init = Consumer.__init__


def _init(consumer: Any, *args: Any, **kwargs: Any) -> None:
    _upstream_init(consumer, *args, **kwargs)
    consumer._read_offset = ForgetfulOffsets()


def install_offset_fix() -> None:
    """Patch faust's Consumer (idempotent)."""
    global _installed
    if _installed:
        return
    Consumer.__init__ = _init  # type: ignore[method-assign,assignment]
    Consumer.getmany = getmany  # type: ignore[method-assign,assignment]
    Consumer._new_offset = new_offset  # type: ignore[method-assign,assignment]
    _installed = True
