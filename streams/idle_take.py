"""Micro-batches from a Faust stream that sleep while the topic is idle.

Faust's ``Stream.noack_take(max_, within)`` waits for a full buffer with a
timeout of ``within`` in a loop, so an idle agent wakes every ``within``
(20 ms: 50 times a second per agent), and each wake-up goes through mode's
``wait_first`` (two tasks and an ``asyncio.wait``). That was the largest
part of an idle worker's CPU (session 5: ~0.03 CPU-s/s, goal 0.02).

``take_batches`` keeps Faust's take and changes one thing: while nothing is
buffered, the take's wait has no timeout and ends when the next event arrives
(or the stream stops); from then on ``within`` applies as before. A batch is
therefore still yielded at most ``within`` after its first event arrived.

With ``quiet`` set, a batch is also yielded once no event arrived for ``quiet``
seconds: the agent has caught up with its topic, and waiting out ``within`` would
only add latency (at 50 products/s each of the two agents added its whole 20 ms
window to every product). A busy topic keeps events coming faster than that, so
its batches stay as large as before. The take checks every ``quiet`` seconds
rather than on every event, so the check costs a few wake-ups per batch.
Events are counted by a processor added before the take's own, so an event
that arrives while a batch is being handled is never missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any


class _Arrivals:
    """Events seen by the stream's processors against events handed out in batches."""

    def __init__(self) -> None:
        self.seen = 0
        self.taken = 0
        self.event = asyncio.Event()

    async def count(self, value: Any) -> Any:
        self.seen += 1
        self.event.set()
        return value

    @property
    def pending(self) -> bool:
        return self.seen > self.taken


async def take_batches(
    stream: Any, max_: int, within: float, quiet: float = 0.0
) -> AsyncIterator[Sequence[Any]]:
    """``stream.noack_take(max_, within)``, without its wake-ups while idle, cut when quiet."""
    arrivals = _Arrivals()
    stream.add_processor(arrivals.count)
    timed_wait = stream.wait_for_stopped
    loop = asyncio.get_running_loop()

    async def wait_for_stopped(
        *waiting: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (mode's signature)
    ) -> bool:
        # Only the take calls this on a stream (faust/streams.py); it returns True when
        # the stream is stopping.
        if not arrivals.pending:
            arrivals.event.clear()
            if not arrivals.pending and await timed_wait(arrivals.event):
                return True
        if not quiet or timeout is None:
            return bool(await timed_wait(*waiting, timeout=timeout))
        return await _wait_until_quiet(waiting, loop.time() + timeout)

    async def _wait_until_quiet(waiting: tuple[Any, ...], deadline: float) -> bool:
        # Full buffer, the window (``within``) spent, or no new event for ``quiet``.
        while (remaining := deadline - loop.time()) > 0:
            seen = arrivals.seen
            if await timed_wait(*waiting, timeout=min(quiet, remaining)):
                return True
            if arrivals.seen == seen or any(event.is_set() for event in waiting):
                break
        return False

    stream.wait_for_stopped = wait_for_stopped
    try:
        async for events in stream.noack_take(max_, within=within):
            arrivals.taken += len(events)
            yield events
    finally:
        stream.wait_for_stopped = timed_wait
