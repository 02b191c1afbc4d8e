"""One micro-batch through the models: what to publish for each product.

Pure orchestration over three collaborators (image embedder, categoriser call,
review router) so the Faust agent only deals with Kafka. A batch's images and text
go to Triton in one ``product_pipeline`` request (image encoder → categoriser on the
server), or as two direct calls when that model is off or fails. For each product:

* a delete yields tombstones for its prediction and embeddings;
* an unchanged product (same fingerprint) with a known last prediction skips
  Triton and carries that prediction forward;
* everything else is categorised; its prediction, embeddings and, when the
  model is unsure, a review item are published.

Triton being unavailable is recoverable: the batch is retried with back-off
until it goes through (the agent does not ack meanwhile). A batch Triton
rejects as invalid is retried product by product, and the products it still
rejects are dead-lettered with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import orjson

from catstream.backoff import retry_async
from catstream.errors import InvalidMessage, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import BATCH_SIZE, EVENTS, PIPELINE_FALLBACKS, STAGE_SECONDS
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from schemas.events import (
    CategoryScore,
    NormalisedProduct,
    Prediction,
    ProductEmbedding,
    ReviewItem,
)
from schemas.vectors import encode_vector
from streams.image_embedding import FetchedImages, ImageEmbedder, ImageEmbeddings
from streams.model_state import ModelState
from streams.review import (
    ReviewCandidate,
    ReviewRouter,
    needs_review,
    review_threshold,
    uncertainty,
)
from triton_models.categoriser.contract import (
    Categorised,
    build_prediction,
    candidates,
    categorise,
    categorise_with_images,
)
from triton_models.categoriser.metadata import ModelMetadata
from triton_models.triton_client import TritonRequestInvalid, TritonServerError, TritonUnavailable

STAGE = "infer"
LastPrediction = str | dict[str, Any]
log = get_logger(__name__, stage=STAGE)


@dataclass
class BatchOutputs:
    """Everything one batch produces, in input order."""

    predictions: list[tuple[str, Prediction | None]] = field(default_factory=list)
    embeddings: list[tuple[str, ProductEmbedding | None]] = field(default_factory=list)
    review: list[ReviewItem] = field(default_factory=list)
    # The product and why: InvalidMessage (its fault) or any other exception (a bug).
    dead_letters: list[tuple[NormalisedProduct, BaseException]] = field(default_factory=list)
    # Product id → its prediction as JSON text (None: forget it). Text, not a dict: it
    # is a quarter of the memory per product in the agent's table.
    last_predictions: dict[str, LastPrediction | None] = field(default_factory=dict)


class InferenceStep:
    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        model: ModelState,
        images: ImageEmbedder,
        review: ReviewRouter,
        triton: Any,
    ) -> None:
        self.settings = settings
        # Only for versions exported without their own taxonomy (see ``_taxonomy``).
        self.default_taxonomy = taxonomy
        self.model = model
        self.images = images
        self.review = review
        self.triton = triton
        self.review_threshold = review_threshold(settings)

    async def run(
        self,
        products: list[NormalisedProduct],
        last_prediction: Callable[[str], LastPrediction | None],
    ) -> BatchOutputs:
        """The batch's outputs, in input order: a product's events come out in the
        order they went in (an upsert then a delete in one batch must end deleted)."""
        started = time.perf_counter()
        plan: list[tuple[str, NormalisedProduct, dict[str, Any] | None]] = []
        to_infer: list[NormalisedProduct] = []
        # Products an earlier event of this batch deletes or re-infers: the table's last
        # prediction is not theirs any more, so a later unchanged event is inferred too.
        touched: set[str] = set()
        for product in products:
            if product.op == "delete":
                plan.append(("delete", product, None))
                touched.add(product.product_id)
            elif product.product_id not in touched and (
                last := self._carried(product, last_prediction(product.product_id))
            ):
                plan.append(("carry", product, last))
            else:
                plan.append(("infer", product, None))
                to_infer.append(product)
                touched.add(product.product_id)
        inferred = BatchOutputs()
        slices: dict[int, BatchOutputs] = {}
        if to_infer:
            slices = await self._infer(to_infer, inferred)
        out = BatchOutputs(dead_letters=inferred.dead_letters, review=inferred.review)
        for kind, product, last in plan:
            if kind == "delete":
                self._delete(product, out)
            elif kind == "carry":
                assert last is not None
                self._carry_forward(product, last, out)
            elif (one := slices.get(id(product))) is not None:  # absent: dead-lettered
                out.predictions += one.predictions
                out.embeddings += one.embeddings
                out.last_predictions.update(one.last_predictions)
        BATCH_SIZE.labels(stage=STAGE).observe(len(products))
        STAGE_SECONDS.labels(stage=STAGE).observe(time.perf_counter() - started)
        return out

    @staticmethod
    def _carried(product: NormalisedProduct, last: LastPrediction | None) -> dict[str, Any] | None:
        """The last prediction (parsed) to carry forward to ``product``, or None to infer it.

        Only a prediction made for this very fingerprint is carried forward. The
        normalise agent's "unchanged" compares with the last version it *saw*; if the
        prediction of that version was never stored here (lost in a kill or an outage),
        the table holds an older version's prediction, and carrying it forward would
        publish it under the new ``updated_at``: a version silently skipped.
        """
        if product.changed or not last:
            return None
        # Tables written before predictions were stored as text hold dicts.
        known: dict[str, Any] = orjson.loads(last) if isinstance(last, str) else last
        if known.get("fingerprint") != product.fingerprint:
            log.warning(
                "carry_forward_refused_fingerprint_differs",
                product_id=product.product_id,
                fingerprint=product.fingerprint,
                last_fingerprint=known.get("fingerprint"),
            )
            return None
        return known

    def _delete(self, product: NormalisedProduct, out: BatchOutputs) -> None:
        out.predictions.append((product.product_id, None))
        out.embeddings.append((product.product_id, None))
        out.last_predictions[product.product_id] = None
        EVENTS.labels(stage=STAGE, outcome="deleted").inc()

    def _carry_forward(
        self, product: NormalisedProduct, known: dict[str, Any], out: BatchOutputs
    ) -> None:
        # Not validated again: the table holds only predictions this agent validated
        # when it made them (one validation per product per hop).
        prediction = _trusted_prediction(
            {**known, "updated_at": product.updated_at, "carried_forward": True}
        )
        out.predictions.append((product.product_id, prediction))
        EVENTS.labels(stage=STAGE, outcome="carried_forward").inc()

    async def _infer(
        self, products: list[NormalisedProduct], out: BatchOutputs
    ) -> dict[int, BatchOutputs]:
        """Each inferred product's outputs (by ``id(product)``); review items and dead
        letters go to ``out``."""
        metadata = await self._with_retries(lambda: self._metadata())
        fetched = await self._with_retries(lambda: self.images.fetch(products))
        answered = await self._through_pipeline(products, fetched, metadata)
        if answered is not None:
            results, images = answered
        else:
            images = await self._with_retries(lambda: self.images.encode(fetched, products))
            results = await self._categorise(products, images, metadata, out)
        decisions = self.review.offer_batch(
            [self._review_candidate(product, result, metadata) for product, result in results]
        )
        rows = {id(product): row for row, product in enumerate(products)}
        # Decisions are one per candidate, in order: a product that appears twice in a
        # batch gets its own decision each time (and at most one of them is sent).
        slices: dict[int, BatchOutputs] = {}
        for (product, result), decision in zip(results, decisions, strict=True):
            one = slices[id(product)] = BatchOutputs()
            self._publish_one(
                product, result, images, rows[id(product)], metadata, decision.item, one
            )
            out.review += one.review
        return slices

    async def _metadata(self) -> ModelMetadata:
        return self.model.current()

    async def _through_pipeline(
        self, products: list[NormalisedProduct], fetched: FetchedImages, metadata: ModelMetadata
    ) -> tuple[list[tuple[NormalisedProduct, Categorised]], ImageEmbeddings] | None:
        """The batch in one ``product_pipeline`` request; None: make the direct calls.

        Any answer but "unavailable" sends the batch the direct way (image_encoder, then
        categoriser), whose errors say whose fault they are: through BLS every error of
        the categoriser arrives as INTERNAL (triton-inference-server/server#7804), so a
        product the categoriser rejects cannot be told from a server fault here. The
        direct calls split such a batch and dead-letter the product; a missing or older
        pipeline model costs one failed call per batch.
        """
        model = self.settings.product_pipeline_model
        if not model:
            return None
        try:
            results, images = await retry_async(
                partial(
                    categorise_with_images,
                    self.triton,
                    model,
                    metadata.version,
                    products,
                    fetched.data,
                ),
                dependency="triton",
                recoverable=(TritonUnavailable,),
            )
        except (TritonRequestInvalid, TritonServerError) as exc:
            PIPELINE_FALLBACKS.inc()
            log.warning("product_pipeline_failed_calling_models_directly", error=str(exc))
            return None
        failed = [a or b for a, b in zip(fetched.failed, images.failed, strict=True)]
        both = ImageEmbeddings(images.vectors, images.mask, failed)
        return list(zip(products, results, strict=True)), both

    async def _categorise(
        self,
        products: list[NormalisedProduct],
        images: ImageEmbeddings,
        metadata: ModelMetadata,
        out: BatchOutputs,
    ) -> list[tuple[NormalisedProduct, Categorised]]:
        model, version = self.settings.categoriser_model, metadata.version
        try:
            results = await self._with_retries(
                lambda: categorise(self.triton, model, version, products, images)
            )
            return list(zip(products, results, strict=True))
        except TritonRequestInvalid:
            if len(products) == 1:
                raise
        # One product poisons the batch: find it by asking one at a time.
        kept: list[tuple[NormalisedProduct, Categorised]] = []
        for index, product in enumerate(products):
            single = ImageEmbeddings(
                images.vectors[index : index + 1], images.mask[index : index + 1], [False]
            )
            try:
                (result,) = await self._with_retries(
                    partial(categorise, self.triton, model, version, [product], single)
                )
                kept.append((product, result))
            except TritonRequestInvalid as exc:
                reason = (
                    f"the categoriser rejected this product ({exc}); check its text fields "
                    "for unusual content, fix the feed, then replay the dead letter"
                )
                out.dead_letters.append(
                    (product, InvalidMessage(reason, error_class="ModelRejected"))
                )
        return kept

    async def _with_retries(self, call: Callable[[], Any]) -> Any:
        """Await ``call()`` until it stops failing with a recoverable error.

        TritonServerError covers a model that is being (re)loaded (NOT_FOUND) and
        server faults: retrying delays the stream, skipping would lose products.
        """
        return await retry_async(
            call,
            dependency="triton",
            recoverable=(TritonUnavailable, TritonServerError, RecoverableError),
        )

    def _uncertainty(self, result: Categorised) -> float:
        return uncertainty(self.settings.review_measure, result.top_scores)

    def _review_candidate(
        self, product: NormalisedProduct, result: Categorised, metadata: ModelMetadata
    ) -> ReviewCandidate:
        return ReviewCandidate(
            product_id=product.product_id,
            uncertainty=self._uncertainty(result),
            accepted=result.predicted_id is not None,
            embedding=np.asarray(result.text_embedding, dtype=np.float32),
            fingerprint=product.fingerprint,
            model_version=str(metadata.version),
            candidates=candidates(self._taxonomy(metadata), metadata, result),
            title=product.title,
            description=product.description,
            brand=product.brand,
            raw_category=product.raw_category,
            image_urls=product.image_urls,
            url=product.url,
            merchant=product.merchant,
            price=product.price,
            currency=product.currency,
        )

    def _taxonomy(self, metadata: ModelMetadata) -> Taxonomy:
        """The served version's own taxonomy: its category ids come from that tree."""
        return self.model.taxonomy_for(metadata) or self.default_taxonomy

    def _publish_one(
        self,
        product: NormalisedProduct,
        result: Categorised,
        images: ImageEmbeddings,
        row: int,
        metadata: ModelMetadata,
        review: ReviewItem | None,
        out: BatchOutputs,
    ) -> None:
        product_uncertainty = self._uncertainty(result)
        taxonomy = self._taxonomy(metadata)
        prediction = build_prediction(
            product,
            result,
            metadata,
            taxonomy,
            model_name=self.settings.categoriser_model,
            uncertainty=product_uncertainty,
            needs_review=needs_review(
                self.settings.review_measure,
                product_uncertainty,
                self.review_threshold,
                accepted=result.predicted_id is not None,
            ),
            image_failed=images.failed[row],
        )
        top = prediction.top_category
        top_ids = taxonomy.ancestors_and_self(top.id) if top else ()
        # Built, not validated: the Milvus sink validates it once, on receipt.
        embedding = ProductEmbedding.model_construct(
            product_id=product.product_id,
            model_version=str(metadata.version),
            text_embedding=encode_vector(result.text_embedding),
            image_embedding=(
                encode_vector(images.vectors[row]) if images.mask[row, 0] > 0 else None
            ),
            category_ids=list(top_ids),
            category_path=[taxonomy.get(cid).name for cid in top_ids],
            fingerprint=product.fingerprint,
            updated_at=product.updated_at,
        )
        out.predictions.append((product.product_id, prediction))
        out.embeddings.append((product.product_id, embedding))
        if review is not None:
            out.review.append(review)
        out.last_predictions[product.product_id] = prediction.model_dump_json()
        EVENTS.labels(stage=STAGE, outcome="categorised").inc()


def _trusted_prediction(fields: dict[str, Any]) -> Prediction:
    """A ``Prediction`` from fields that were validated when it was first made."""
    categories = [CategoryScore.model_construct(**c) for c in fields.get("categories") or ()]
    top = fields.get("top_category")
    return Prediction.model_construct(
        **{
            **fields,
            "categories": categories,
            "top_category": CategoryScore.model_construct(**top) if top else None,
        }
    )
