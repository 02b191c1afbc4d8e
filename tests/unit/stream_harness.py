"""An in-memory stand-in for the Kafka side of the agents, for unit tests.

Topics record what is sent (and can refuse it), messages and events carry what
faust gives an agent, and the stream yields batches then waits like a live
topic does. No broker, no faust app: the steps under test only touch these.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # Faust's messages carry the record's Kafka timestamp (seconds); the agents time
    # each record's age from it (catstream_record_age_seconds).
    timestamp: float = field(default_factory=time.time)

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class Event:
    message: Message


def raw_message(
    offset: int, key: bytes | None, value: bytes | dict[str, Any] | None, *, partition: int = 0
) -> Message:
    body = json.dumps(value).encode() if isinstance(value, dict) else value
    return Message("products.raw", partition, offset, key, body)


@dataclass
class MemoryTopic:
    """Collects ``send`` calls; ``refuse`` makes the next sends fail like a broker error."""

    sent: list[tuple[bytes | None, bytes | None]] = field(default_factory=list)
    refuse: list[BaseException] = field(default_factory=list)

    async def send(self, *, key: bytes | None, value: bytes | None) -> asyncio.Future[None]:
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse:
            delivered.set_exception(self.refuse.pop(0))
        else:
            self.sent.append((key, value))
            delivered.set_result(None)
        return delivered

    def values(self) -> list[dict[str, Any] | None]:
        return [json.loads(v) if v is not None else None for _, v in self.sent]


@dataclass
class MemoryConsumer:
    """What ``PartitionContiguity`` asks of faust's consumer."""

    _committed_offset: dict[Any, int | None] = field(default_factory=dict)
    seeks: list[tuple[Any, int]] = field(default_factory=list)
    earliest: int = 0  # every partition's first offset
    # What the broker holds for the group (Faust's ``_committed_offset`` may lack it).
    broker_commits: dict[Any, int] = field(default_factory=dict)

    async def earliest_offsets(self, *partitions: Any) -> dict[Any, int]:
        return {tp: self.earliest for tp in partitions}

    async def committed(self, tp: Any) -> int | None:
        return self.broker_commits.get(tp)

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


@dataclass
class MemoryApp:
    consumer: MemoryConsumer = field(default_factory=MemoryConsumer)


class MemoryStream:
    """Yields the given batches from ``noack_take``, then waits forever (a live topic)."""

    def __init__(self, batches: list[list[Event]]) -> None:
        self.batches = batches
        self.acked: list[Event] = []
        self.take_max: list[int] = []  # the ``max_`` of every noack_take call
        self.processors: list[Any] = []

    def add_processor(self, processor: Any) -> None:
        self.processors.append(processor)

    async def wait_for_stopped(
        self,
        *waiting: Any,
        timeout: float | None = None,  # noqa: ASYNC109 (mode's signature)
    ) -> bool:
        return False  # this stream's take never waits

    async def noack_take(self, max_: int, within: float) -> Any:
        self.take_max.append(max_)
        for batch in self.batches:
            yield batch
        await asyncio.Event().wait()

    async def ack(self, event: Event) -> None:
        self.acked.append(event)
