"""Faust's aiokafka consumer waits after an empty fetch instead of spinning.

aiokafka's fetcher sends the next fetch to a broker as soon as the last one
returned; against a broker that answers empty fetches at once (see
``catstream.idle_polling``) an idle worker burned ~0.2 CPU-s/s in Faust, aiokafka
and the event loop. Faust builds its ``AIOKafkaConsumer`` itself with a fixed
``fetch_max_wait_ms`` and offers no hook, so the fetcher's per-node request is
wrapped: when it brought no new records, it sleeps ``IdlePolling``'s delay before
it completes. The node counts as "in flight" meanwhile, so no other fetch to it
starts; a rebalance or close cancels the sleep like any fetch in flight. A fetch
the broker held for most of ``fetch_max_wait_ms`` (a real Kafka broker) is followed
by no wait at all.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

from catstream.idle_polling import IdlePolling

_ORIGINAL = Fetcher._proc_fetch_request
_max_delay_s: float | None = None


def install_fetch_backoff(max_delay_s: float) -> None:
    """Make every aiokafka fetcher in this process wait up to ``max_delay_s`` when idle."""
    global _max_delay_s
    _max_delay_s = max_delay_s
    Fetcher._proc_fetch_request = _proc_fetch_request


# Share of fetch_max_wait_ms after which an empty fetch counts as held by the broker.
_HELD_SHARE = 0.8


async def _proc_fetch_request(self: Any, assignment: Any, node_id: int, request: Any) -> bool:
    started = time.monotonic()
    has_records = bool(await _ORIGINAL(self, assignment, node_id, request))
    took_s = time.monotonic() - started
    idle: dict[int, IdlePolling] | None = getattr(self, "_catstream_idle", None)
    if idle is None:
        idle = self._catstream_idle = {}
    polling = idle.get(node_id)
    if polling is None:
        polling = idle[node_id] = IdlePolling(
            max_delay_s=_max_delay_s or 0.0,
            held_s_min=_HELD_SHARE * self._fetch_max_wait_ms / 1000,
        )
    delay = polling.fetched(has_records, took_s)
    if delay:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            # As the original does: a cancelled fetch (close, unassignment) just ends.
            return has_records
    return has_records
