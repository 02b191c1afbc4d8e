"""The interface every sink implements, and the message it receives.

Modelled on quix-streams' sinks: ``add()`` buffers one record, ``flush()``
writes the buffer and is called before offsets are committed. A sink keys
everything by product id, so a replay after a crash rewrites the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from catstream.errors import InvalidMessage


@dataclass(frozen=True, slots=True)
class SinkMessage:
    """One Kafka record as a sink sees it. ``value is None`` is a tombstone (delete)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int

    @property
    def product_id(self) -> str | None:
        return self.key.decode("utf-8", "replace") if self.key is not None else None


@dataclass(frozen=True, slots=True)
class Refused:
    """A buffered record the store will never accept, and why."""

    message: SinkMessage
    error: InvalidMessage


class Sink(Protocol):
    """A batching writer to an external store."""

    name: str

    def add(self, message: SinkMessage) -> None:
        """Buffer one record. Raise ``InvalidMessage`` if it can never be written."""

    def flush(self) -> list[Refused]:
        """Write everything buffered. Raise ``RecoverableError`` to be retried later;
        the buffer must survive a failed flush so the retry writes the same records.

        Returns the records the store refused for good (each with why): the runner
        dead-letters them on the shared path before it commits their offsets."""

    def close(self) -> None:
        """Release connections."""
