"""The inference agent: ``products.normalised`` → predictions, embeddings, review.

Micro-batches of up to ``batch_max_products`` events or ``batch_max_wait_ms``
go through ``InferenceStep``. Up to ``max_batches_in_flight`` batches run at
once; when that many are waiting on Triton the agent stops taking events, so a
slow Triton backs the stream up instead of growing memory. Batches complete in
any order but are published and acked in the order they were taken, so every
product's outputs stay in order and an offset is acked only after all its
outputs were sent.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from typing import Any

import faust
from faust.streams import _current_event
from pydantic import ValidationError

from catstream.deadletters import dead_letter_event
from catstream.errors import InvalidMessage
from catstream.logs import get_logger
from catstream.metrics import DEAD_LETTERS, EVENTS
from catstream.settings import Settings
from catstream.taxonomy import load_taxonomy
from schemas.events import NormalisedProduct
from streams.app import product_topic
from streams.contiguity import PartitionContiguity
from streams.image_embedding import ImageEmbedder
from streams.images import ImageFetcher
from streams.inference import STAGE, BatchOutputs, InferenceStep
from streams.model_state import ModelState
from streams.review import ReviewRouter
from triton_models.triton_client import TritonClient

log = get_logger(__name__, stage=STAGE)

# A started batch: its inference task, the events to ack, and the changed product ids.
_Pending = tuple[asyncio.Task[BatchOutputs], list[Any], list[str]]


class InferAgent:
    """Batches, pipelining and Kafka plumbing around ``InferenceStep``."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.topics = {
            key: product_topic(app, settings, key)
            for key in ("predictions", "embeddings", "review", "deadletter")
        }
        self.last_predictions = app.Table(
            "last-prediction", default=None, partitions=settings.topic_partitions
        )
        self.contiguity = PartitionContiguity(STAGE)
        self.in_flight: Counter[str] = Counter()  # changed products still being inferred
        self.step: InferenceStep | None = None
        self.stream: Any = None

    def _build_step(self) -> InferenceStep:
        # Built on first use, inside the worker's event loop (gRPC and aiohttp bind to it).
        triton = TritonClient.from_settings(self.settings)
        return InferenceStep(
            self.settings,
            taxonomy=load_taxonomy(self.settings.taxonomy_path),
            model=ModelState(self.settings),
            images=ImageEmbedder(self.settings, triton, ImageFetcher(self.settings)),
            # A tenth of the confident products go to labellers as random samples, so
            # review is not only the model's hardest cases (see BACKGROUND: active learning).
            review=ReviewRouter(self.settings, random_share=0.1),
            triton=triton,
        )

    async def consume(self, stream: Any) -> None:
        self.step = self.step or self._build_step()
        self.stream = stream
        # Batches are started here and finished (published, acked) by a separate task in
        # the order they were taken. The queue bound is the back-pressure: when it is
        # full the take loop waits, so the consumer stops pulling while Triton is slow.
        pending: asyncio.Queue[_Pending] = asyncio.Queue(
            maxsize=max(1, self.settings.max_batches_in_flight - 1)
        )
        finisher = asyncio.ensure_future(self._finish_in_order(pending))
        within = self.settings.batch_max_wait_ms / 1000
        try:
            async for events in stream.noack_take(self.settings.batch_max_products, within=within):
                if finisher.done():
                    finisher.result()  # re-raise what stopped it: never hang silently
                batch, admitted = await self._admit(list(events))
                if admitted:
                    await pending.put(self._start(batch, admitted))
        finally:
            finisher.cancel()

    async def _finish_in_order(self, pending: asyncio.Queue[_Pending]) -> None:
        while True:
            task, events, changed = await pending.get()
            await self._finish(task, events, changed)

    async def _admit(self, events: list[Any]) -> tuple[list[NormalisedProduct], list[Any]]:
        """Decode the events that are next in their partition; dead-letter undecodable ones."""
        products: list[NormalisedProduct] = []
        admitted: list[Any] = []
        for event in events:
            message = event.message
            if not await self.contiguity.admit(self.app.consumer, message.tp, message.offset):
                continue
            admitted.append(event)
            try:
                products.append(_decode(message))
            except InvalidMessage as exc:
                await self._dead_letter_message(message, exc)
        return products, admitted

    def _start(self, products: list[NormalisedProduct], events: list[Any]) -> _Pending:
        # An unchanged product whose changed version is still in flight has no usable
        # last prediction yet: infer it rather than carry forward a stale one.
        products = [
            p.model_copy(update={"changed": True})
            if not p.changed and self.in_flight[p.product_id]
            else p
            for p in products
        ]
        changed = [p.product_id for p in products if p.changed and p.op != "delete"]
        self.in_flight.update(changed)
        assert self.step is not None
        task = asyncio.ensure_future(self.step.run(products, self.last_predictions.get))
        return task, events, changed

    async def _finish(
        self, task: asyncio.Task[BatchOutputs], events: list[Any], changed: list[str]
    ) -> None:
        try:
            outputs = await task
        finally:
            self.in_flight.subtract(changed)
            self.in_flight += Counter()  # drop zero counts
        await self._publish(outputs, events)
        for event in events:
            await self.stream.ack(event)

    async def _publish(self, outputs: BatchOutputs, events: list[Any]) -> None:
        by_product = {e.message.key.decode("utf-8", "replace"): e for e in events if e.message.key}
        for key, topic in (
            ("predictions", outputs.predictions),
            ("embeddings", outputs.embeddings),
        ):
            for product_id, event in topic:
                value = event.model_dump_json().encode() if event is not None else None
                await self.topics[key].send(key=product_id.encode(), value=value)
        for item in outputs.review:
            await self.topics["review"].send(
                key=item.product_id.encode(), value=item.model_dump_json().encode()
            )
        for product, error in outputs.dead_letters:
            source = by_product.get(product.product_id)
            if source is not None:
                await self._dead_letter_message(source.message, error)
        for product_id, last in outputs.last_predictions.items():
            self._remember(by_product.get(product_id), product_id, last)

    def _remember(self, event: Any, product_id: str, last: dict[str, Any] | None) -> None:
        # The table's changelog partition comes from the "current event": make it the
        # product's own event, not whichever event the batch buffer saw last.
        if event is not None:
            _current_event.set(weakref.ref(event))
        if last is None:
            self.last_predictions.pop(product_id, None)
        else:
            self.last_predictions[product_id] = last

    async def _dead_letter_message(self, message: Any, exc: InvalidMessage) -> None:
        letter = dead_letter_event(
            value=message.value,
            key=message.key,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            stage=STAGE,
            error_class=exc.error_class,
            reason=exc.reason,
        )
        await self.topics["deadletter"].send(
            key=message.key, value=letter.model_dump_json().encode()
        )
        DEAD_LETTERS.labels(stage=STAGE, error=exc.error_class).inc()
        EVENTS.labels(stage=STAGE, outcome="dead_lettered").inc()
        log.warning(
            "dead_lettered",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            error=exc.error_class,
            reason=exc.reason,
        )


def _decode(message: Any) -> NormalisedProduct:
    if message.value is None:
        key = message.key.decode("utf-8", "replace") if message.key else ""
        if not key:
            raise InvalidMessage("tombstone without a key on products.normalised")
        return NormalisedProduct(product_id=key, op="delete")
    try:
        return NormalisedProduct.model_validate_json(message.value)
    except ValidationError as exc:
        raise InvalidMessage(
            f"not a valid products.normalised event ({exc.error_count()} errors, first: "
            f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); only the normalise agent "
            "should write this topic: check for a foreign producer or a schema mismatch",
            error_class="SchemaViolation",
        ) from exc


def register_infer_agent(app: faust.App, settings: Settings) -> InferAgent:
    agent = InferAgent(app, settings)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        agent.contiguity.forget(revoked)

    @app.agent(product_topic(app, settings, "normalised"), name="infer")
    async def infer(stream: Any) -> None:
        await agent.consume(stream)

    return agent
