"""A fix for faust-streaming 0.15.3's offset bookkeeping, installed at start-up.

``Consumer._new_offset`` decides which offset to commit from the offsets acked
so far. It refuses to commit when the smallest acked offset is *more than one*
past the committed offset, but Kafka's committed offset already means "the next
offset to read". So when offset ``C`` (== committed) is still in flight and
``C+1`` is acked, faust commits past ``C``. A restart at that moment (the
moment right after "Worker ready" is typical: the first fetch delivers several
records per partition that are processed concurrently by agents with different
latencies) silently skips ``C``. The same off-by-one makes the check miss
genuine holes, which is how a partition's committed offset could freeze.

The corrected rule: commit only a run of consecutive acked offsets that starts
exactly at the committed offset (or anywhere, when nothing was committed yet).
Gap intervals faust records for compacted topics are folded in first, exactly
as upstream does.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.utils.functional import consecutive_numbers

_installed = False


def new_offset(consumer: Any, tp: Any) -> int | None:
    """The offset to commit for ``tp``, or None when nothing new is safe to commit."""
    acked: list[int] = consumer._acked[tp]
    if not acked:
        return None
    _fold_in_gaps(consumer, tp, acked)
    acked.sort()
    committed = consumer._committed_offset[tp]
    if committed is not None and acked[0] > committed:
        # The record at `committed` has not been acked yet: committing now would skip it.
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


def install_offset_fix() -> None:
    """Replace ``Consumer._new_offset`` with :func:`new_offset` (idempotent)."""
    global _installed
    if _installed:
        return
    Consumer._new_offset = new_offset  # type: ignore[method-assign,assignment]
    _installed = True
