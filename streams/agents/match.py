"""The matching agent: same product across merchants → offer groups on ``products.matches``.

It runs after inference and joins two topics keyed by product id in a
changelog-backed table (``match-inputs``):

- ``products.normalised`` gives the fields (title, brand, merchant, price,
  currency, size, colour, codes in ``extra``);
- ``products.embeddings`` gives the text and image vectors and the predicted
  category (its level-1 id bounds the candidates).

A product is matched once both halves carry the same fingerprint, and again
whenever its fields change (a new price, a new merchant title with the same
fingerprint); an unchanged re-feed is not matched again, so its group stays.
A delete (or an embeddings tombstone) takes the product out of its group.
Before matching it waits (up to ``match_vector_wait_s``) until the Milvus sink
has written the product, so the next product's kNN search finds it.

Errors follow the one error path (``catstream.deadletters``): Milvus or
Elasticsearch unavailable → back off and retry, never ack past it; an
undecodable event → ``products.deadletter`` with the reason; any other
failure → a ``ProcessingBug`` dead letter.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from pydantic import ValidationError

from catstream.deadletters import (
    DeadLetterPolicy,
    DeadLetterTopic,
    Disposition,
    SourceMessage,
    disposition,
)
from catstream.errors import InvalidMessage, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import EVENTS, MATCH_SECONDS, OFFER_GROUP_SIZES, OFFER_GROUPS
from catstream.settings import Settings
from schemas.events import NormalisedProduct, OfferGroup, ProductEmbedding
from schemas.vectors import decode_vector
from streams.agents.guarded import handle_until_done
from streams.app import product_topic
from streams.match_candidates import MatchBackends, Vectors
from streams.matching import RECORD_FIELDS, MatchInput, OfferMatcher, Regrouped

STAGE = "match"
log = get_logger(__name__, stage=STAGE)
FIELD_KEYS = (*RECORD_FIELDS, "url", "image_urls")
GROUP_COUNT_EVERY_S = 30.0
MAX_REPUBLISH = 20  # rounds of re-publishing groups other workers changed meanwhile


class MatchStep:
    """Handles one normalised or embeddings event; owns no Kafka plumbing beyond its topics."""

    def __init__(
        self,
        settings: Settings,
        inputs: Any,
        matches: Any,
        deadletter: Any,
        matcher: OfferMatcher | None = None,
    ) -> None:
        self.settings = settings
        self.inputs = inputs
        self.matches = matches
        self.policy = DeadLetterPolicy(STAGE, settings)
        self.dead_letters = DeadLetterTopic(self.policy, deadletter)
        self._matcher = matcher
        self.lock = asyncio.Lock()  # one regrouping at a time per worker

    @property
    def matcher(self) -> OfferMatcher:
        if self._matcher is None:
            from workers.elasticsearch_index import elasticsearch_client

            model: Any
            if self.settings.matcher_serving == "triton":
                from triton_models.matcher.client import TritonPairModel

                model = TritonPairModel(self.settings)
            else:
                from triton_models.matcher.pair_model import load_served

                model = load_served(self.settings.model_repository)
            backends = MatchBackends(self.settings, elasticsearch_client(self.settings))
            self._matcher = OfferMatcher(self.settings, model, backends)
        return self._matcher

    async def handle(self, message: Any) -> str:
        """One message → outcome; raises only ``RecoverableError`` / ``DeadLetterLimitExceeded``."""
        try:
            if message.topic == self.settings.topic("normalised"):
                outcome = await self._normalised(message)
            else:
                outcome = await self._embedding(message)
            self.policy.ok()
        except Exception as exc:
            if disposition(exc) is Disposition.RETRY:
                raise
            await self.dead_letters.send(SourceMessage.of(message), exc)
            outcome = "dead_lettered"
        EVENTS.labels(stage=STAGE, outcome=outcome).inc()
        return outcome

    async def _normalised(self, message: Any) -> str:
        key = _key(message)
        if message.value is None:
            return await self._remove(key)
        product = _parse(NormalisedProduct, message, key)
        if product.op == "delete":
            return await self._remove(key)
        fields = {k: getattr(product, k) for k in FIELD_KEYS if getattr(product, k, None)}
        entry = dict(self.inputs.get(key) or {})
        same = entry.get("fields") == fields and entry.get("fields_fp") == product.fingerprint
        if same and entry.get("matched"):
            return "unchanged"
        entry.update(fields=fields, fields_fp=product.fingerprint, updated_at=product.updated_at)
        return await self._match_when_ready(key, entry)

    async def _embedding(self, message: Any) -> str:
        key = _key(message)
        if message.value is None:
            return await self._remove(key)
        embedding = _parse(ProductEmbedding, message, key)
        entry = dict(self.inputs.get(key) or {})
        if entry.get("vectors_fp") == embedding.fingerprint and entry.get("matched"):
            return "unchanged"
        entry.update(
            text=embedding.text_embedding,
            image=embedding.image_embedding,
            cat_l1=embedding.category_ids[0] if embedding.category_ids else None,
            vectors_fp=embedding.fingerprint,
        )
        return await self._match_when_ready(key, entry)

    async def _match_when_ready(self, key: str, entry: dict[str, Any]) -> str:
        """Match once both halves agree; ``matched`` is stored only after it succeeded,
        so a retried event (Milvus or Elasticsearch were down) is matched again."""
        entry["matched"] = False
        self.inputs[key] = entry
        if entry.get("fields_fp") is None or entry.get("fields_fp") != entry.get("vectors_fp"):
            return "waiting"  # the other half (or its newer version) is still on its way
        item = MatchInput(
            product_id=key,
            fields=dict(entry["fields"]),
            vectors=Vectors(_floats(entry.get("text")), _floats(entry.get("image"))),
            cat_l1=entry.get("cat_l1"),
            updated_at=entry.get("updated_at"),
            fingerprint=str(entry["fields_fp"]),
        )
        started = time.perf_counter()
        await self._wait_for_milvus(key)
        async with self.lock:
            result = await asyncio.to_thread(self.matcher.match, item)
        await self._publish(result)
        self.inputs[key] = {**entry, "matched": True}
        MATCH_SECONDS.observe(time.perf_counter() - started)
        return "matched"

    async def _wait_for_milvus(self, key: str) -> None:
        deadline = time.monotonic() + self.settings.match_vector_wait_s
        delay = 0.05
        while not await asyncio.to_thread(self.matcher.backends.in_milvus, key):
            if time.monotonic() > deadline:
                log.warning("match_without_own_vector", product_id=key)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _remove(self, key: str) -> str:
        if key in self.inputs:
            del self.inputs[key]
        async with self.lock:
            result = await asyncio.to_thread(self.matcher.remove, key)
        await self._publish(result, tombstones=[key])
        return "removed"

    async def _publish(self, result: Regrouped, tombstones: list[str] | None = None) -> None:
        """Publish and wait for Kafka's acknowledgement, then publish again the groups
        another worker changed since they were read (its events may have landed first),
        until none did: the last event of each product is its stored group."""
        events, gone, versions = result.events, list(tombstones or []), result.versions
        for _ in range(MAX_REPUBLISH):
            await self._send(events, gone)
            events, gone, versions = await asyncio.to_thread(self.matcher.refreshed, versions)
            if not events and not gone:
                return
        log.warning("match_republish_gave_up", products=sorted(versions)[:5])

    async def _send(self, events: list[OfferGroup], tombstones: list[str]) -> None:
        futures = [
            await self.matches.send(key=key.encode("utf-8"), value=None) for key in tombstones
        ]
        for event in events:
            OFFER_GROUP_SIZES.observe(len(event.members))
            futures.append(
                await self.matches.send(
                    key=event.product_id.encode("utf-8"), value=event.model_dump_json().encode()
                )
            )
        results = await asyncio.gather(*futures, return_exceptions=True)
        error = next((r for r in results if isinstance(r, BaseException)), None)
        if error is not None:
            raise RecoverableError("kafka", f"offer groups not delivered: {error!r}")

    async def count_groups(self) -> None:
        """Refresh ``catstream_offer_groups{size}`` from the offer index."""
        sizes = await asyncio.to_thread(self.matcher.backends.group_sizes)
        OFFER_GROUPS.clear()
        for size, count in sizes.items():
            OFFER_GROUPS.labels(size=str(size) if size < 10 else "10+").inc(count)


def _key(message: Any) -> str:
    if not message.key:
        raise InvalidMessage(
            f"record at {message.topic}[{message.partition}]@{message.offset} has no key; "
            "producers must key product events by product_id",
            error_class="InvalidProductId",
        )
    return bytes(message.key).decode("utf-8", "replace")


def _parse(model: type[Any], message: Any, key: str) -> Any:
    try:
        event = model.model_validate_json(message.value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise InvalidMessage(
            f"not a valid {model.__name__} ({where}: {first['msg']}); fix the producer of "
            f"{message.topic} to follow schemas/json",
            error_class="SchemaError",
        ) from exc
    if event.product_id != key:
        raise InvalidMessage(
            f"key {key!r} differs from product_id {event.product_id!r}; "
            "key every product event by its product_id"
        )
    return event


async def run_match(step: MatchStep, message: Any) -> bool:
    """Handle ``message`` until done; False when the process is stopping (do not ack it)."""
    return await handle_until_done(STAGE, lambda: step.handle(message), dependency="match")


def register_match_agent(app: faust.App, settings: Settings) -> MatchStep:
    """Declare the join table and the matching agent (both input topics) on ``app``."""
    inputs = app.Table("match-inputs", default=None, partitions=settings.topic_partitions)
    step = MatchStep(
        settings,
        inputs,
        matches=product_topic(app, settings, "matches"),
        deadletter=product_topic(app, settings, "deadletter"),
    )
    source = app.topic(
        settings.topic("normalised"),
        settings.topic("embeddings"),
        partitions=settings.topic_partitions,
        value_serializer="raw",
        key_serializer="raw",
    )

    @app.agent(source, name="match")
    async def match(stream: Any) -> None:
        events = stream.noack()
        async for event in events.events():
            if not await run_match(step, event.message):
                await asyncio.Event().wait()
            await events.ack(event)

    @app.timer(GROUP_COUNT_EVERY_S)
    async def count_groups() -> None:
        try:
            await step.count_groups()
        except Exception as exc:  # a metric refresh never stops the worker
            log.warning("offer_group_count_failed", error=str(exc))

    return step


def _floats(vector: str | list[float] | None) -> list[float] | None:
    """A stored vector as floats: the table keeps the wire form (base64 of float32, issue 10)."""
    if vector is None or isinstance(vector, list):
        return vector
    return [float(x) for x in decode_vector(vector)]
