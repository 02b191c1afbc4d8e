"""The normalise agent: ``products.raw`` → ``products.normalised``.

Per event: decode and validate, normalise, fingerprint and digest, compare with
the product's last state (a changelog-backed table), then publish. Invalid input
goes to ``products.deadletter`` with a reason; stale updates are dropped and
counted; a record identical to the last one published (only ``updated_at``
differs; see ``streams.change_detection`` for why that is safe) is not published
at all unless ``refresh_identical`` is set. Every offset therefore ends up
normalised, dead-lettered or counted as stale or identical
(``catstream_events_total{stage="normalise",outcome=...}``), and the event is
acked only after Kafka acknowledged its output and its ``product-state``
changelog write (both through ``streams.output_producer``, confirmed once per
micro-batch), so no committed offset has an undelivered output.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any

import faust
from faust.streams import _current_event

from catstream.backoff import retry_async
from catstream.deadletters import (
    DeadLetterPolicy,
    DeadLetterTopic,
    Disposition,
    SourceMessage,
    disposition,
)
from catstream.errors import InvalidMessage, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import EVENTS, RECORD_AGE_SECONDS, STAGE_SECONDS, STALE_EVENTS
from catstream.settings import Settings
from normaliser.fingerprint import fingerprint, record_digest
from normaliser.product import normalise_product
from schemas.events import NormalisedProduct, RawProduct, now_ms, parse_updated_at
from streams.agents.guarded import handle_until_done
from streams.app import product_topic
from streams.change_detection import (
    ProductState,
    Verdict,
    advance,
    check_not_in_future,
    judge,
    next_state,
)
from streams.changelog_table import ChangelogTable
from streams.contiguity import PartitionContiguity, watch_partitions
from streams.idle_take import take_batches
from streams.output_producer import OutputProducer
from streams.raw_decoding import decode_raw_product

STAGE = "normalise"
log = get_logger(__name__, stage=STAGE)


class NormaliseStep:
    """Handles one raw event; owns no Kafka plumbing beyond the topics it is given."""

    def __init__(
        self,
        settings: Settings,
        states: Any,
        normalised: Any,
        deadletter: Any,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.states = states
        self.normalised = normalised
        self.policy = DeadLetterPolicy(STAGE, settings)
        self.dead_letters = DeadLetterTopic(self.policy, deadletter)
        self.clock_ms = clock_ms
        # Outputs sent since the last confirm(), in order: key, value, delivery future
        # (None: to be sent again).
        self._unconfirmed: list[tuple[bytes, bytes | None, Any]] = []

    async def handle(self, message: Any) -> str:
        """Process one message; returns the outcome (for metrics and tests).

        Never raises over the message itself: invalid input and bugs become dead
        letters. Raises ``RecoverableError`` (retry it) and ``DeadLetterLimitExceeded``
        (stop the process without committing it).
        """
        started = time.perf_counter()
        context = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
        try:
            outcome = await self._handle(message, context)
            self.policy.ok()
        except Exception as exc:
            if disposition(exc) is Disposition.RETRY:
                raise
            await self.dead_letters.send(SourceMessage.of(message), exc)
            outcome = "dead_lettered"
        EVENTS.labels(stage=STAGE, outcome=outcome).inc()
        STAGE_SECONDS.labels(stage=STAGE).observe(time.perf_counter() - started)
        return outcome

    async def _handle(self, message: Any, context: dict[str, Any]) -> str:
        if message.value is None:
            return await self._delete(_key_text(message.key), None, context)
        raw = decode_raw_product(message.key, message.value, self.settings.max_message_bytes)
        updated_at = parse_updated_at(raw.updated_at)
        check_not_in_future(
            updated_at, self.clock_ms(), int(self.settings.updated_at_max_skew_s * 1000)
        )
        if raw.op == "delete":
            return await self._delete(raw.product_id, updated_at, context)
        product = self._normalise(raw)
        previous = ProductState.from_dict(self.states.get(product.product_id))
        digest = record_digest(product)
        source = (message.partition, message.offset)
        verdict = judge(previous, product.updated_at, product.fingerprint, digest, source)
        if verdict is Verdict.STALE:
            STALE_EVENTS.inc()
            log.info("stale_dropped", product_id=product.product_id, **context)
            return "stale"
        if verdict is Verdict.IDENTICAL:
            assert previous is not None
            if not self.settings.refresh_identical:
                state = advance(previous, product.updated_at)
                if state != previous:
                    self.states[product.product_id] = state.as_dict()
                return verdict.value
            verdict = Verdict.UNCHANGED  # refresh: flows as before the digest existed
        product = product.model_copy(update={"changed": verdict is Verdict.CHANGED})
        # Encoded before the state changes: a product that cannot be published leaves
        # the table as it was (and becomes a dead letter).
        await self._publish(product)
        state = next_state(previous, product.updated_at, product.fingerprint, digest, source)
        if state != previous:
            # Only a new state is written: each write is a changelog record, and in a
            # re-published feed most products' state is what the table already holds.
            self.states[product.product_id] = state.as_dict()
        return verdict.value

    def _normalise(self, raw: RawProduct) -> NormalisedProduct:
        product = normalise_product(raw, max_chars=self.settings.field_max_chars)
        digest = fingerprint(product, self.settings.categorisation_fields)
        return product.model_copy(update={"fingerprint": digest})

    async def _delete(
        self, product_id: str | None, updated_at: int | None, context: dict[str, Any]
    ) -> str:
        if not product_id:
            raise InvalidMessage(
                "tombstone without a key; key delete tombstones by product_id",
                error_class="InvalidProductId",
            )
        previous = ProductState.from_dict(self.states.get(product_id))
        if (
            previous is not None
            and updated_at is not None
            and judge(previous, updated_at, "") is Verdict.STALE
        ):
            STALE_EVENTS.inc()
            log.info("stale_delete_dropped", product_id=product_id, **context)
            return "stale"
        await self._publish(
            NormalisedProduct(product_id=product_id, op="delete", updated_at=updated_at)
        )
        # A deleted product's state is dropped, so the table holds live products only
        # (a changelog tombstone). An upsert older than the delete that arrives later is
        # then accepted as new; the sinks' own version checks order it.
        if product_id in self.states:
            del self.states[product_id]
        return "deleted"

    async def _publish(self, product: NormalisedProduct) -> None:
        value = product.model_dump_json().encode("utf-8")
        if len(value) > self.settings.max_message_bytes:
            # The broker would refuse it after we moved on: refuse it here, with a reason.
            raise InvalidMessage(
                f"the normalised product is {len(value):,} bytes (raw fields plus cleaned "
                f"ones), over the {self.settings.max_message_bytes:,}-byte limit; trim long "
                "fields (description, extra) in the feed",
                error_class="MessageTooLarge",
            )
        key = product.product_id.encode("utf-8")
        self._unconfirmed.append((key, value, await self.normalised.send(key=key, value=value)))

    async def confirm(self) -> None:
        """Wait until Kafka acknowledged every output sent since the last confirm.

        A failed delivery is recoverable: everything from the first unconfirmed output
        on is sent again, in order (a later delete must stay after the upsert it
        deletes), with back-off, until Kafka takes it.
        """

        async def attempt() -> None:
            entries = [
                (key, value, future or await self.normalised.send(key=key, value=value))
                for key, value, future in self._unconfirmed
            ]
            self._unconfirmed = entries
            results = await asyncio.gather(*(f for _, _, f in entries), return_exceptions=True)
            failed = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), None)
            if failed is None:
                self._unconfirmed = []
                return
            self._unconfirmed = [(key, value, None) for key, value, _ in entries[failed:]]
            error = results[failed]
            raise RecoverableError("kafka", f"normalised output not delivered: {error!r}")

        await retry_async(attempt, dependency="kafka")


async def run_normalise(step: NormaliseStep, message: Any) -> bool:
    """Handle ``message`` until done; False when the process is stopping (do not ack it)."""
    return await handle_until_done(STAGE, lambda: step.handle(message), dependency="kafka")


def _key_text(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key is not None else None


def register_normalise_agent(app: faust.App, settings: Settings) -> NormaliseStep:
    """Declare the product-state table and the agent on ``app``."""
    # Outputs and changelog writes go through librdkafka and are confirmed per batch
    # (streams.output_producer); dead letters, rare, through Faust's producer.
    output = OutputProducer(settings)
    states = ChangelogTable(
        app,
        output=output,
        name="product-state",
        default=None,
        beacon=app.tables.beacon,
        partitions=settings.topic_partitions,
    )
    app.tables.add(states)
    step = NormaliseStep(
        settings,
        states,
        normalised=output.topic(settings.topic("normalised")),
        deadletter=product_topic(app, settings, "deadletter"),
    )

    contiguity = PartitionContiguity(STAGE)

    watch_partitions(app, contiguity)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        contiguity.forget(revoked)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_output(app: faust.App, **_: Any) -> None:
        # Unacked events are handled again after a restart; this only saves the rework.
        await asyncio.to_thread(output.close)

    @app.agent(product_topic(app, settings, "raw"), name="normalise")
    async def normalise(stream: Any) -> None:
        # noack + explicit ack: an event is acked only once its output was delivered,
        # never by the iterator's cleanup when the agent is cancelled mid-batch.
        within = settings.batch_max_wait_ms / 1000
        quiet = settings.normalise_quiet_ms / 1000
        async for events in take_batches(stream, settings.take_max_events, within, quiet):
            handled = []
            for event in events:
                message = event.message
                if not await contiguity.admit(app.consumer, message.tp, message.offset):
                    continue
                # The state table's changelog partition comes from the "current event":
                # in a batch that must be this message's own event.
                _current_event.set(weakref.ref(event))
                if not await run_normalise(step, message):
                    # The guard tripped: hold here, never acking past this message, until
                    # the shutdown it started cancels the agent.
                    await asyncio.Event().wait()
                handled.append(event)
            await step.confirm()
            await states.confirm_changelog()
            now = time.time()
            for event in handled:
                RECORD_AGE_SECONDS.labels(stage=STAGE).observe(now - event.message.timestamp)
                await stream.ack(event)

    return step
