"""The inference agent: ``products.normalised`` → predictions, embeddings, review.

Micro-batches of up to ``batch_max_products`` events or ``batch_max_wait_ms``
go through ``InferenceStep``. Up to ``max_batches_in_flight`` batches run at
once; when that many are waiting on Triton the agent stops taking events, so a
slow Triton backs the stream up instead of growing memory. Batches complete in
any order but are published and acked in the order they were taken, so every
product's outputs stay in order and an offset is acked only after all its
outputs were sent.

Failures follow the one error path (``catstream.deadletters``): Triton being
unavailable is retried inside the step; a batch that fails for any other
reason is run again product by product, and a product that still fails is
dead-lettered (``ProcessingBug`` unless it is the product's fault). Should the
task that publishes batches die, or a dead-letter guard trip, the agent stops
the process (non-zero exit) instead of waiting on a queue nobody empties.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import Counter
from typing import Any

import faust
from faust.streams import _current_event
from pydantic import ValidationError

from catstream.backoff import retry_async
from catstream.deadletters import DeadLetterPolicy, DeadLetterTopic, SourceMessage
from catstream.errors import DeadLetterLimitExceeded, InvalidMessage, RecoverableError
from catstream.liveness import LIVENESS
from catstream.logs import get_logger
from catstream.metrics import EVENTS, RECORD_AGE_SECONDS
from catstream.settings import Settings
from catstream.taxonomy import load_taxonomy
from schemas.events import NormalisedProduct
from streams.app import product_topic
from streams.changelog_table import ChangelogTable
from streams.contiguity import PartitionContiguity, watch_partitions
from streams.idle_take import take_batches
from streams.image_embedding import ImageEmbedder
from streams.images import ImageFetcher
from streams.inference import STAGE, BatchOutputs, InferenceStep, LastPrediction
from streams.model_state import ModelState
from streams.output_producer import OutputProducer
from streams.review import ReviewRouter
from triton_models.triton_client import TritonClient

log = get_logger(__name__, stage=STAGE)

# A started batch: its inference task, its products, the events to ack, and the
# changed product ids.
_Pending = tuple[asyncio.Task[BatchOutputs], list[NormalisedProduct], list[Any], list[str]]


class InferAgent:
    """Batches, pipelining and Kafka plumbing around ``InferenceStep``.

    ``topics``, ``last_predictions`` and ``step`` are made from ``app`` unless given
    (the unit tests give in-memory ones).
    """

    def __init__(
        self,
        app: Any,
        settings: Settings,
        *,
        topics: dict[str, Any] | None = None,
        last_predictions: Any = None,
        step: InferenceStep | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        # Outputs and changelog writes through librdkafka, confirmed per batch
        # (streams.output_producer); dead letters, rare, through Faust's producer.
        self.output = OutputProducer(settings) if topics is None else None
        self.topics = topics or {
            **{
                key: self._output().topic(settings.topic(key))
                for key in ("predictions", "embeddings", "review")
            },
            "deadletter": product_topic(app, settings, "deadletter"),
        }
        self.last_predictions = (
            last_predictions if last_predictions is not None else self._last_prediction_table()
        )
        self.policy = DeadLetterPolicy(STAGE, settings)
        self.dead_letters = DeadLetterTopic(self.policy, self.topics["deadletter"])
        self.contiguity = PartitionContiguity(STAGE)
        self.in_flight: Counter[str] = Counter()  # changed products still being inferred
        self.step: InferenceStep | None = step
        self.stream: Any = None

    def _output(self) -> OutputProducer:
        assert self.output is not None
        return self.output

    def _last_prediction_table(self) -> ChangelogTable:
        table = ChangelogTable(
            self.app,
            output=self._output(),
            name="last-prediction",
            default=None,
            beacon=self.app.tables.beacon,
            partitions=self.settings.topic_partitions,
        )
        self.app.tables.add(table)
        return table

    def _build_step(self) -> InferenceStep:
        # Built on first use, inside the worker's event loop (gRPC and aiohttp bind to it).
        triton = TritonClient.from_settings(self.settings)
        return InferenceStep(
            self.settings,
            taxonomy=load_taxonomy(self.settings.taxonomy_path),
            model=ModelState(self.settings, refresh_s=self.settings.model_refresh_s),
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
        taker = asyncio.ensure_future(self._take(stream, pending))
        try:
            # Whichever ends first decides: the taker ends with the stream; the
            # finisher only ends by failing, and then nothing would ever be acked again.
            await asyncio.wait({finisher, taker}, return_when=asyncio.FIRST_COMPLETED)
            failed = finisher if finisher.done() else taker
            error = failed.exception()
            if failed is finisher or isinstance(error, DeadLetterLimitExceeded):
                self._stop_process(error)
                await asyncio.Event().wait()  # hold, acking nothing, until shutdown cancels us
            await taker
        finally:
            finisher.cancel()
            taker.cancel()

    def _stop_process(self, error: BaseException | None) -> None:
        if isinstance(error, DeadLetterLimitExceeded):
            reason = str(error)
        else:
            reason = (
                f"the infer agent's publishing task failed with {type(error).__name__}: {error}; "
                "this is a catstream bug (report it with the worker log); the process restarts "
                "and handles the unacknowledged batches again"
            )
            log.error("infer_finisher_failed", exc_info=error)
        LIVENESS.stop_process(STAGE, reason)

    async def _take(self, stream: Any, pending: asyncio.Queue[_Pending]) -> None:
        within = self.settings.batch_max_wait_ms / 1000
        # No early cut when quiet (the normalise agent's normalise_quiet_ms): here the window
        # gathers products into fewer Triton calls. Cut early, each categoriser call took
        # twice as long (39-46 -> 73-81 ms mean) and the paced p99 went 199-206 -> 331-529 ms.
        async for events in take_batches(stream, self.settings.take_max_events, within):
            admitted = await self._admit(list(events))
            for batch in self._triton_batches(admitted):
                products = [product for _, product in batch if product is not None]
                await pending.put(self._start(products, [event for event, _ in batch]))

    def _triton_batches(
        self, admitted: list[tuple[Any, NormalisedProduct | None]]
    ) -> list[list[tuple[Any, NormalisedProduct | None]]]:
        """``admitted`` cut into batches of at most ``batch_max_products`` to infer.

        Unchanged products (they carry their last prediction forward) ride along free:
        in a re-published feed with 90% unchanged, a take of 64 events held ~6 products
        to infer, and the feed went through Triton in requests a tenth of the size a
        fresh one gets (session 5: re-published only 2x faster than fresh).
        """
        batches: list[list[tuple[Any, NormalisedProduct | None]]] = [[]]
        to_infer = 0
        for event, product in admitted:
            inferred = (
                product is not None
                and product.op != "delete"
                and (product.changed or self.in_flight[product.product_id] > 0)
            )
            if inferred and to_infer >= self.settings.batch_max_products:
                batches.append([])
                to_infer = 0
            batches[-1].append((event, product))
            to_infer += inferred
        return [batch for batch in batches if batch]

    async def _finish_in_order(self, pending: asyncio.Queue[_Pending]) -> None:
        while True:
            task, products, events, changed = await pending.get()
            await self._finish(task, products, events, changed)

    async def _admit(self, events: list[Any]) -> list[tuple[Any, NormalisedProduct | None]]:
        """The events that are next in their partition, each with its product (None:
        undecodable, and dead-lettered)."""
        admitted: list[tuple[Any, NormalisedProduct | None]] = []
        for event in events:
            message = event.message
            if not await self.contiguity.admit(self.app.consumer, message.tp, message.offset):
                continue
            try:
                admitted.append((event, _decode(message)))
            except Exception as exc:  # invalid, or a bug: the one error path decides
                await self._dead_letter(message, exc)
                admitted.append((event, None))
        return admitted

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
        return task, products, events, changed

    async def _finish(
        self,
        task: asyncio.Task[BatchOutputs],
        products: list[NormalisedProduct],
        events: list[Any],
        changed: list[str],
    ) -> None:
        try:
            try:
                outputs = await task
            except Exception as exc:  # not recoverable (the step retries those itself)
                log.warning("batch_failed_retrying_one_by_one", error=repr(exc)[:300])
                outputs = await self._one_by_one(products)
        finally:
            self.in_flight.subtract(changed)
            self.in_flight += Counter()  # drop zero counts
        await self._publish(outputs, events)
        if isinstance(self.last_predictions, ChangelogTable):
            await self.last_predictions.confirm_changelog()
        now = time.time()
        for event in events:
            RECORD_AGE_SECONDS.labels(stage=STAGE).observe(now - event.message.timestamp)
            await self.stream.ack(event)

    async def _one_by_one(self, products: list[NormalisedProduct]) -> BatchOutputs:
        """The batch's outputs, product by product; a product that fails is dead-lettered."""
        assert self.step is not None
        merged = BatchOutputs()
        for product in products:
            try:
                single = await self.step.run([product], self.last_predictions.get)
            except Exception as exc:
                merged.dead_letters.append((product, exc))
                continue
            merged.predictions += single.predictions
            merged.embeddings += single.embeddings
            merged.review += single.review
            merged.dead_letters += single.dead_letters
            merged.last_predictions.update(single.last_predictions)
        return merged

    async def _publish(self, outputs: BatchOutputs, events: list[Any]) -> None:
        by_product = {e.message.key.decode("utf-8", "replace"): e for e in events if e.message.key}
        messages: list[tuple[str, bytes, bytes | None]] = []
        for key, topic in (
            ("predictions", outputs.predictions),
            ("embeddings", outputs.embeddings),
        ):
            for product_id, event in topic:
                value = event.model_dump_json().encode() if event is not None else None
                messages.append((key, product_id.encode(), value))
        for item in outputs.review:
            messages.append(("review", item.product_id.encode(), item.model_dump_json().encode()))
        await self._send_confirmed(messages)
        for product, error in outputs.dead_letters:
            source = by_product.get(product.product_id)
            if source is not None:
                await self._dead_letter(source.message, error)
        for _ in range(len(events) - len(outputs.dead_letters)):
            self.policy.ok()
        # Only after Kafka acknowledged the outputs: the table never gets ahead of what
        # was published (a carry-forward reads it).
        for product_id, last in outputs.last_predictions.items():
            self._remember(by_product.get(product_id), product_id, last)

    async def _send_confirmed(self, messages: list[tuple[str, bytes, bytes | None]]) -> None:
        """Send ``messages`` in order and wait until Kafka acknowledged every one.

        Faust flushes its producer before a commit, but a flush does not fail when a
        send failed: an event acked on an unconfirmed send could be committed past with
        its prediction lost. A failed send is recoverable: everything from the first
        unconfirmed message on is sent again, in order (a later tombstone must stay
        after the upsert it deletes), with back-off.
        """
        pending = messages

        async def attempt() -> None:
            nonlocal pending
            # A send that raises (producer closed) is not a delivery failure: it ends
            # the publishing task, and the process restarts.
            futures = [
                await self.topics[key].send(key=product_id, value=value)
                for key, product_id, value in pending
            ]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), None)
            if failed is None:
                pending = []
                return
            error = results[failed]
            pending = pending[failed:]
            raise RecoverableError("kafka", f"infer outputs not delivered: {error!r}") from error

        await retry_async(attempt, dependency="kafka")

    async def _dead_letter(self, message: Any, error: BaseException) -> None:
        await self.dead_letters.send(SourceMessage.of(message), error)
        EVENTS.labels(stage=STAGE, outcome="dead_lettered").inc()

    def _remember(self, event: Any, product_id: str, last: LastPrediction | None) -> None:
        # The table's changelog partition comes from the "current event": make it the
        # product's own event, not whichever event the batch buffer saw last.
        if event is not None:
            _current_event.set(weakref.ref(event))
        if last is None:
            self.last_predictions.pop(product_id, None)
        else:
            self.last_predictions[product_id] = last


def _decode(message: Any) -> NormalisedProduct:
    if message.value is None:
        key = message.key.decode("utf-8", "replace") if message.key else ""
        if not key:
            raise InvalidMessage(
                "tombstone without a key on products.normalised; only the normalise agent "
                "should write this topic (it keys every event by product_id): find the "
                "foreign producer",
                error_class="InvalidProductId",
            )
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

    watch_partitions(app, agent.contiguity)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        agent.contiguity.forget(revoked)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_output(app: faust.App, **_: Any) -> None:
        # Unacked batches are handled again after a restart; this only saves the rework.
        if agent.output is not None:
            await asyncio.to_thread(agent.output.close)

    @app.agent(product_topic(app, settings, "normalised"), name="infer")
    async def infer(stream: Any) -> None:
        await agent.consume(stream)

    return agent
