"""Guarantee that an agent sees every offset of its input partitions, in order.

Even with the fixes in ``streams.offset_tracking``, faust-streaming 0.15.3
still dropped a record at ``committed+1`` now and then right after a restart
(a record fetched under one consumer generation is discarded by the stream
after a quick second rebalance, and nothing fetches it again). Rather than
rely on every code path in faust being right, each agent checks the one
invariant that matters: per partition, the next event it handles must be at
the offset after the last one it handled. When an event arrives past a hole,
the agent seeks the partition back to the hole and ignores events until the
missing record arrives. If the same hole shows up again after seeking, the
offsets truly do not exist (transaction markers, compaction) and it moves on.

A refetch can also never arrive: in the chaos run, after a rebalance the
stream delivered nothing at all once the agent had sought back, so the agent
waited forever with its committed offsets frozen. ``watch`` (a timer in each
agent) seeks such a partition again, and when the hole is still open after
``stall_limit_s`` it stops the process (non-zero exit): the restarted worker
reads from the committed offset, and no partition is silently frozen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from catstream.liveness import LIVENESS
from catstream.logs import get_logger
from catstream.metrics import EVENTS
from streams.offset_tracking import committed_offset, seek

log = get_logger(__name__)


@dataclass
class PartitionContiguity:
    """Per-partition expected offsets for one agent."""

    stage: str
    reseek_after_s: float = 15.0
    max_refetches: int = 4
    stall_limit_s: float = 180.0
    expected: dict[Any, int] = field(default_factory=dict)
    refetches: dict[Any, tuple[int, int, float]] = field(default_factory=dict)
    # Partition → when its current hole was first seen (cleared when the hole fills).
    waiting_since: dict[Any, float] = field(default_factory=dict)

    def forget(self, partitions: set[Any]) -> None:
        """Partitions were revoked: their next owner starts at the committed offset."""
        for tp in partitions:
            self.expected.pop(tp, None)
            self.refetches.pop(tp, None)
            self.waiting_since.pop(tp, None)

    async def admit(self, consumer: Any, tp: Any, offset: int) -> bool:
        """True if the event at ``offset`` is the next one to handle for ``tp``."""
        expected = self.expected.get(tp)
        if expected is None:
            expected = consumer._committed_offset.get(tp)
            if expected is None:
                start = await self._start_without_commit(consumer, tp)
                if start is None:
                    return False  # the broker is not answering: this record comes again
                expected = start
        if offset == expected:
            self.refetches.pop(tp, None)
            self.waiting_since.pop(tp, None)
            self.expected[tp] = offset + 1
            return True
        if offset < expected:
            return False  # already handled (redelivered after a seek)
        return await self._on_gap(consumer, tp, expected, offset)

    async def _start_without_commit(self, consumer: Any, tp: Any) -> int | None:
        """Where a partition Faust knows no committed offset for starts.

        Faust forgets a partition's committed offset when it is revoked and learns it
        again on assignment, so after a quick second rebalance an event can arrive
        before Faust knows the commit. The broker still holds it: start there. Before,
        the agent started at the earliest offset, and a restarted normalise worker
        re-published its whole first feed (a record at the offset that last published
        it is a replay, so it is published again).

        Only where the group has no commit (a new group, or a broker restart lost it)
        does the partition start at its earliest offset. Taking the first record that
        arrives as the start (as before) let the chaos run accept a record hundreds of
        offsets past the commit, and faust then committed that run: 640 normalised
        events were never inferred. Faust is told the start, so it commits only a run
        that starts there (``streams.offset_tracking.new_offset``).
        """
        try:
            start = await committed_offset(consumer, tp)
            if start is None:
                start = (await consumer.earliest_offsets(tp)).get(tp)
        except Exception as exc:  # broker unreachable: decide on a later record
            log.info("start_offset_unavailable", topic=tp.topic, error=str(exc))
            return None
        if start is None:
            return None
        consumer._committed_offset[tp] = start
        return int(start)

    async def _on_gap(self, consumer: Any, tp: Any, expected: int, offset: int) -> bool:
        missing_from, attempts, last_seek = self.refetches.get(tp, (expected, 0, 0.0))
        if attempts >= self.max_refetches:
            # We went back for this hole many times and it is still there: the offsets
            # do not exist (transaction markers, compaction). Accept and move on.
            log.warning(
                "offset_gap_accepted",
                stage=self.stage,
                topic=tp.topic,
                partition=tp.partition,
                missing_from=expected,
                next_offset=offset,
            )
            self.refetches.pop(tp, None)
            self.waiting_since.pop(tp, None)
            self.expected[tp] = offset + 1
            return True
        now = time.monotonic()
        self.waiting_since.setdefault(tp, now)
        if attempts == 0 or now - last_seek >= self.reseek_after_s:
            # Events already queued behind the hole keep arriving for a moment after a
            # seek; only seek again once the refetch had time to arrive.
            log.warning(
                "offset_gap_refetching",
                stage=self.stage,
                topic=tp.topic,
                partition=tp.partition,
                missing_from=expected,
                got=offset,
                attempt=attempts + 1,
            )
            EVENTS.labels(stage=self.stage, outcome="refetched_gap").inc()
            self.refetches[tp] = (missing_from, attempts + 1, now)
            await seek(consumer, tp, expected)
        return False

    async def watch(self, consumer: Any, now: float | None = None) -> str | None:
        """Seek again where a refetch never arrived; the reason to stop, if one is stuck.

        Called periodically, whether or not events arrive (none may).
        """
        now = time.monotonic() if now is None else now
        for tp, (missing_from, attempts, last_seek) in list(self.refetches.items()):
            since = self.waiting_since.get(tp, last_seek)
            if now - since >= self.stall_limit_s:
                return (
                    f"{tp.topic}[{tp.partition}]: the record at offset {missing_from} "
                    f"has not arrived {now - since:.0f} s after seeking back for it; the process "
                    "restarts and reads again from the committed offset"
                )
            if now - last_seek < self.reseek_after_s:
                continue
            log.warning(
                "offset_gap_refetch_stalled",
                stage=self.stage,
                topic=tp.topic,
                partition=tp.partition,
                missing_from=missing_from,
                waiting_s=round(now - since),
            )
            # Attempts are not counted: only a hole seen again after a refetch is accepted.
            self.refetches[tp] = (missing_from, attempts, now)
            try:
                await seek(consumer, tp, missing_from)
            except Exception as exc:  # revoked meanwhile: forget() follows
                log.info("refetch_seek_failed", topic=tp.topic, error=str(exc))
        return None


WATCH_INTERVAL_S = 5.0


def watch_partitions(app: Any, contiguity: PartitionContiguity) -> None:
    """Run ``contiguity.watch`` on a timer of ``app``; stop the process when it is stuck."""

    @app.timer(interval=WATCH_INTERVAL_S, name=f"{contiguity.stage}-contiguity-watch")
    async def watch() -> None:
        reason = await contiguity.watch(app.consumer)
        if reason is not None:
            LIVENESS.stop_process(contiguity.stage, reason)
