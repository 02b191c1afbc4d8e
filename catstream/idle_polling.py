"""How long a consumer waits before fetching again after an empty fetch.

Some brokers (noida-db, the local stack's) answer an empty fetch at once instead
of holding it for ``fetch.max.wait.ms``, so a consumer with nothing to read
fetches in a tight loop: ~0.05 CPU-s/s per idle consumer in the client, and as
much again in the broker. ``fetch.wait.max.ms`` and ``fetch.min.bytes`` are
broker-side and do not help against such a broker; waiting on our side does,
whatever the broker does. The wait doubles with every empty fetch in a row, so a
busy stream (which never sees two empty fetches in a row) pays nothing and an
idle one settles at ``max_delay_s`` between fetches.

A broker that does hold empty fetches (Kafka itself, for ``fetch.max.wait.ms``)
needs no such wait, and waiting after it would only delay the records that
arrive meanwhile: an empty fetch that took at least ``held_s_min`` counts as held
and asks for no wait.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IdlePolling:
    """Counts empty fetches in a row; ``delay_s()`` is the wait before the next fetch."""

    max_delay_s: float
    base_delay_s: float = 0.005
    empty_in_a_row: int = 0
    held_s_min: float = float("inf")  # an empty fetch this long was held by the broker

    def fetched(self, has_records: bool, took_s: float = 0.0) -> float:
        """Record a fetch's outcome and duration; returns seconds to wait before the next one."""
        if has_records or took_s >= self.held_s_min:
            self.empty_in_a_row = 0
            return 0.0
        self.empty_in_a_row += 1
        return self.delay_s()

    def delay_s(self) -> float:
        if self.empty_in_a_row == 0 or self.max_delay_s <= 0:
            return 0.0
        exponent = min(self.empty_in_a_row - 1, 32)
        return min(self.max_delay_s, self.base_delay_s * 2**exponent)
