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
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from catstream.logs import get_logger
from catstream.metrics import EVENTS

log = get_logger(__name__)


@dataclass
class PartitionContiguity:
    """Per-partition expected offsets for one agent."""

    stage: str
    reseek_after_s: float = 15.0
    max_refetches: int = 4
    expected: dict[Any, int] = field(default_factory=dict)
    refetches: dict[Any, tuple[int, int, float]] = field(default_factory=dict)

    def forget(self, partitions: set[Any]) -> None:
        """Partitions were revoked: their next owner starts at the committed offset."""
        for tp in partitions:
            self.expected.pop(tp, None)
            self.refetches.pop(tp, None)

    async def admit(self, consumer: Any, tp: Any, offset: int) -> bool:
        """True if the event at ``offset`` is the next one to handle for ``tp``."""
        expected = self.expected.get(tp)
        if expected is None:
            expected = consumer._committed_offset.get(tp)
            if expected is None:  # nothing committed yet: the first record starts the run
                self.expected[tp] = offset + 1
                return True
        if offset == expected:
            self.refetches.pop(tp, None)
            self.expected[tp] = offset + 1
            return True
        if offset < expected:
            return False  # already handled (redelivered after a seek)
        return await self._on_gap(consumer, tp, expected, offset)

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
            self.expected[tp] = offset + 1
            return True
        now = time.monotonic()
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
            await consumer.seek(tp, expected)
        return False
