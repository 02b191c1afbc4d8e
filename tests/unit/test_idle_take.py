"""``take_batches``: an idle agent's take does not wake every ``within``, and an event
arriving at any moment (idle, or while a batch is being handled) is still taken.

``FaustLikeStream.noack_take`` is faust's loop (faust/streams.py) cut to what the
wrapper relies on: a buffer filled by a processor added when the take starts, and a
``self.wait_for_stopped(buffer_full, timeout=within)`` before each batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from streams.idle_take import take_batches


class FaustLikeStream:
    def __init__(self) -> None:
        self.processors: list[Any] = []
        self.expired_waits = 0  # timed waits that ran out (wake-ups with nothing to do)

    def add_processor(self, processor: Any) -> None:
        self.processors.append(processor)

    async def put(self, value: Any) -> None:
        for processor in list(self.processors):
            value = await processor(value)

    async def wait_for_stopped(
        self,
        *waiting: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (mode's signature)
    ) -> bool:
        try:
            await asyncio.wait_for(waiting[0].wait(), timeout)
        except TimeoutError:
            self.expired_waits += 1
        return False

    async def noack_take(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        buffer: list[Any] = []
        full = asyncio.Event()
        consuming: asyncio.Future[None] | None = None

        async def add_to_buffer(value: Any) -> Any:
            if consuming is not None:  # as faust: wait until the batch being handled is done
                await consuming
            buffer.append(value)
            if len(buffer) >= max_:
                full.set()
            return value

        self.add_processor(add_to_buffer)
        while True:
            await self.wait_for_stopped(full, timeout=within)
            if buffer:
                consuming = asyncio.get_running_loop().create_future()
                try:
                    yield list(buffer)
                finally:
                    buffer.clear()
                    full.clear()
                    consuming.set_result(None)
                    consuming = None


async def _batches(takes: AsyncIterator[Any], into: list[Any], handled: Any) -> None:
    async for batch in takes:
        into.append(batch)
        await handled(batch)


def _run(wrapped: bool) -> tuple[FaustLikeStream, list[Any]]:
    stream = FaustLikeStream()
    batches: list[Any] = []
    arriving: list[asyncio.Future[None]] = []

    async def handled(batch: list[Any]) -> None:
        if batch == ["a"]:
            # Arrives while "a" is being handled (faust's drainer is a task of its own).
            arriving.append(asyncio.ensure_future(stream.put("b")))
            await asyncio.sleep(0.05)

    async def run() -> None:
        takes = take_batches(stream, 8, 0.01) if wrapped else stream.noack_take(8, within=0.01)
        consuming = asyncio.ensure_future(_batches(takes, batches, handled))
        await asyncio.sleep(0.3)  # idle: what the take does meanwhile is under test
        idle_expired = stream.expired_waits
        await stream.put("a")
        while len(batches) < 2:  # noqa: ASYNC110 (the stand-in has no event to wait on)
            await asyncio.sleep(0.01)
        consuming.cancel()
        stream.expired_waits = idle_expired

    asyncio.run(asyncio.wait_for(run(), 20))
    return stream, batches


def test_an_idle_take_does_not_wake_up_every_within() -> None:
    # Before (faust's take alone): a wake-up every 10 ms, ~30 in 0.3 s.
    stream, batches = _run(wrapped=True)
    assert stream.expired_waits == 0
    assert batches == [["a"], ["b"]]


def test_the_stand_in_wakes_up_like_faust_without_the_wrapper() -> None:
    stream, batches = _run(wrapped=False)
    assert stream.expired_waits > 0
    assert batches == [["a"], ["b"]]


def _timed_batches(
    arrivals_s: list[float], within: float, quiet: float
) -> list[tuple[float, list[float]]]:
    """(when yielded, arrival times) of the batches of events put at ``arrivals_s``."""
    stream = FaustLikeStream()
    batches: list[tuple[float, list[float]]] = []
    started = 0.0

    async def feed(started: float) -> None:
        loop = asyncio.get_running_loop()
        for at in arrivals_s:
            await asyncio.sleep(max(0.0, started + at - loop.time()))
            await stream.put(at)

    async def take() -> None:
        async for batch in take_batches(stream, 1000, within, quiet):
            batches.append((asyncio.get_running_loop().time() - started, list(batch)))

    async def run() -> None:
        nonlocal started
        taking = asyncio.ensure_future(take())
        await asyncio.sleep(0.01)
        started = asyncio.get_running_loop().time()
        await feed(started)
        await asyncio.sleep(within + 0.2)
        taking.cancel()

    asyncio.run(asyncio.wait_for(run(), 20))
    return batches


def test_a_caught_up_take_yields_once_quiet_not_after_the_whole_window() -> None:
    # Two events at once, then nothing: without ``quiet`` they would wait the whole 3 s
    # window. (Quiet is 0.2 s so that a loaded machine's stall cannot split the two.)
    [(yielded_s, batch)] = _timed_batches([0.0, 0.0], within=3.0, quiet=0.2)
    assert batch == [0.0, 0.0]
    assert yielded_s < 1.5


def test_events_arriving_faster_than_quiet_keep_filling_the_batch() -> None:
    # An event every 5 ms for 0.6 s with quiet 0.1 s: batches are cut by the 0.3 s window,
    # not by the quiet checks between (cut at each check, there would be 6 or more).
    arrivals = [i * 0.005 for i in range(120)]
    batches = _timed_batches(arrivals, within=0.3, quiet=0.1)
    assert [at for _, batch in batches for at in batch] == arrivals
    assert len(batches) <= 3, [len(batch) for _, batch in batches]
