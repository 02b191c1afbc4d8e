"""A Faust table whose changelog records go through the agents' ``OutputProducer``.

Faust sends each table write as its own record: ``send_soon`` builds a
``FutureMessage``, queues it on the ``ProducerBuffer``, whose task publishes it
through ``Topic.publish_message`` and aiokafka (~0.2 ms of CPU per write in the
normalise benchmark, session 6). Here a write serialises key and value with
the table's own serialisers (so the changelog holds exactly what Faust writes
and recovers from) and hands the bytes to librdkafka.

Everything else is Faust's table: the in-memory data, recovery from the
changelog at start-up and on assignment, and the partition (the current
event's, as Faust's table uses). Unlike Faust's producer flush before a commit,
which does not fail when a record was not delivered, ``confirm_changelog``
waits until Kafka acknowledged every write since the last call and sends the
failed ones again: the agents call it before acking a batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.tables.table import Table

from catstream.backoff import retry_async
from catstream.errors import RecoverableError
from streams.output_producer import OutputProducer

# A changelog write: partition, key bytes, value bytes (None: a delete).
_Write = tuple[int | None, bytes | None, bytes | None]


class ChangelogTable(Table[Any, Any]):
    """``faust.Table`` with batched, confirmed changelog writes (not for windowed tables)."""

    def __init__(self, app: Any, *, output: OutputProducer, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.output = output
        self._unconfirmed: list[tuple[_Write, asyncio.Future[None] | None]] = []

    def on_key_set(self, key: Any, value: Any) -> None:
        self._write(key, value, self.value_serializer)
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        self._write(key, None, "raw")
        self._sensor_on_del(self, key)

    def _write(self, key: Any, value: Any, value_serializer: Any) -> None:
        # Faust's own serialisation (its ChannelT stub omits the headers argument).
        topic: Any = self.changelog_topic
        key_bytes, headers = topic.prepare_key(key, self.key_serializer, None, {})
        value_bytes, _ = topic.prepare_value(value, value_serializer, None, headers)
        write: _Write = (self.partition_for_key(key), key_bytes, value_bytes)
        self._unconfirmed.append((write, self._send(write)))

    def _send(self, write: _Write) -> asyncio.Future[None]:
        partition, key, value = write
        return self.output.send_now(self.changelog_topic.get_topic_name(), key, value, partition)

    async def confirm_changelog(self) -> None:
        """Return once Kafka acknowledged every write since the last call.

        A failed write is recoverable: it and every later one are sent again, in
        order (a key's later write must stay after its earlier one), with back-off.
        """

        async def attempt() -> None:
            pending, self._unconfirmed = self._unconfirmed, []
            entries = [(w, future or self._send(w)) for w, future in pending]
            results = await asyncio.gather(*(f for _, f in entries), return_exceptions=True)
            failed = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), None)
            if failed is None:
                return
            resend = [(w, None) for w, _ in entries[failed:]]
            self._unconfirmed = resend + self._unconfirmed
            error = results[failed]
            raise RecoverableError("kafka", f"{self.name} changelog not delivered: {error!r}")

        await retry_async(attempt, dependency="kafka")
