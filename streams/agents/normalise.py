"""The normalise agent: ``products.raw`` → ``products.normalised``.

Per event: decode and validate, normalise, fingerprint, compare with the
product's last state (a changelog-backed table), then publish. Invalid input
goes to ``products.deadletter`` with a reason; stale updates are dropped and
counted. Every offset therefore ends up normalised, dead-lettered or counted
as stale, and the event is acked only after its output was sent (Faust
flushes the producer before committing the offset).
"""

from __future__ import annotations

import time
from typing import Any

import faust

from catstream.deadletters import DeadLetterGuard, dead_letter_event
from catstream.errors import InvalidMessage
from catstream.logs import get_logger
from catstream.metrics import DEAD_LETTERS, EVENTS, STAGE_SECONDS, STALE_EVENTS
from catstream.settings import Settings
from normaliser.fingerprint import fingerprint
from normaliser.product import normalise_product
from schemas.events import NormalisedProduct, RawProduct, parse_updated_at
from streams.app import product_topic
from streams.change_detection import ProductState, Verdict, judge, next_state
from streams.contiguity import PartitionContiguity
from streams.raw_decoding import decode_raw_product

STAGE = "normalise"
log = get_logger(__name__, stage=STAGE)


class NormaliseStep:
    """Handles one raw event; owns no Kafka plumbing beyond the topics it is given."""

    def __init__(
        self,
        settings: Settings,
        states: Any,
        normalised: faust.TopicT,
        deadletter: faust.TopicT,
    ) -> None:
        self.settings = settings
        self.states = states
        self.normalised = normalised
        self.deadletter = deadletter
        # Only failures of our own code count towards the guard: garbage input is
        # dead-lettered forever, a normaliser that throws on everything is a bad deploy.
        self.guard = DeadLetterGuard(settings.deadletter_max_ratio, settings.deadletter_window)

    async def handle(self, message: Any) -> str:
        """Process one message; returns the outcome (for metrics and tests)."""
        started = time.perf_counter()
        context = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
        try:
            outcome = await self._handle(message, context)
        except InvalidMessage as exc:
            await self._dead_letter(message, exc, context)
            outcome = "dead_lettered"
        EVENTS.labels(stage=STAGE, outcome=outcome).inc()
        STAGE_SECONDS.labels(stage=STAGE).observe(time.perf_counter() - started)
        return outcome

    async def _handle(self, message: Any, context: dict[str, Any]) -> str:
        if message.value is None:
            return await self._delete(_key_text(message.key), None, context)
        raw = decode_raw_product(message.key, message.value, self.settings.max_message_bytes)
        if raw.op == "delete":
            return await self._delete(raw.product_id, parse_updated_at(raw.updated_at), context)
        product = self._normalise(raw)
        previous = ProductState.from_dict(self.states.get(product.product_id))
        verdict = judge(previous, product.updated_at, product.fingerprint)
        if verdict is Verdict.STALE:
            STALE_EVENTS.inc()
            log.info("stale_dropped", product_id=product.product_id, **context)
            return "stale"
        self.states[product.product_id] = next_state(
            previous, product.updated_at, product.fingerprint
        ).as_dict()
        product = product.model_copy(update={"changed": verdict is Verdict.CHANGED})
        await self._publish(product)
        self.guard.record(False)
        return verdict.value

    def _normalise(self, raw: RawProduct) -> NormalisedProduct:
        try:
            product = normalise_product(raw, max_chars=self.settings.field_max_chars)
            digest = fingerprint(product, self.settings.categorisation_fields)
        except Exception as exc:  # a bug in our code, not in the input
            self.guard.record(True)
            raise InvalidMessage(
                f"normaliser failed with {type(exc).__name__}: {exc}; this is a catstream bug: "
                "report it with this dead letter, then replay with catstream deadletter replay",
                error_class="NormaliserError",
            ) from exc
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
        self.states[product_id] = next_state(previous, updated_at, None).as_dict()
        await self._publish(
            NormalisedProduct(product_id=product_id, op="delete", updated_at=updated_at)
        )
        return "deleted"

    async def _publish(self, product: NormalisedProduct) -> None:
        await self.normalised.send(
            key=product.product_id.encode("utf-8"),
            value=product.model_dump_json().encode("utf-8"),
        )

    async def _dead_letter(
        self, message: Any, exc: InvalidMessage, context: dict[str, Any]
    ) -> None:
        event = dead_letter_event(
            value=message.value,
            key=message.key,
            stage=STAGE,
            error_class=exc.error_class,
            reason=exc.reason,
            **context,
        )
        await self.deadletter.send(key=message.key, value=event.model_dump_json().encode("utf-8"))
        DEAD_LETTERS.labels(stage=STAGE, error=exc.error_class).inc()
        log.warning(
            "dead_lettered",
            product_id=_key_text(message.key),
            error=exc.error_class,
            reason=exc.reason,
            **context,
        )


def _key_text(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key is not None else None


def register_normalise_agent(app: faust.App, settings: Settings) -> NormaliseStep:
    """Declare the product-state table and the agent on ``app``."""
    states = app.Table(
        "product-state",
        default=None,
        partitions=settings.topic_partitions,
    )
    step = NormaliseStep(
        settings,
        states,
        normalised=product_topic(app, settings, "normalised"),
        deadletter=product_topic(app, settings, "deadletter"),
    )

    contiguity = PartitionContiguity(STAGE)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        contiguity.forget(revoked)

    @app.agent(product_topic(app, settings, "raw"), name="normalise")
    async def normalise(stream: Any) -> None:
        # noack + explicit ack: an event is acked only once its output was sent,
        # never by the iterator's cleanup when the agent is cancelled mid-event.
        events = stream.noack()
        async for event in events.events():
            message = event.message
            if not await contiguity.admit(app.consumer, message.tp, message.offset):
                continue
            await step.handle(message)
            await events.ack(event)

    return step
