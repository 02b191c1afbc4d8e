"""Kafka records → the Elasticsearch sink's events and document fields (pure).

Two topics write one document per product:

* ``products.normalised`` → ``NormalisedUpsert`` (every top-level field) or
  ``ProductDelete``; its version is the product's ``updated_at``.
* ``products.predictions`` → ``PredictionUpdate`` (``category`` + ``prediction``);
  its version is ``(updated_at of the product it was made for, predicted_at)``.

When a producer sent no ``updated_at`` the Kafka timestamp stands in for it.
A prediction tombstone is ignored: the normalised delete that caused it carries
the version, while an unversioned delete could remove a newer re-created product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from catstream.errors import InvalidMessage
from schemas.events import CategoryScore, NormalisedProduct, OfferGroup, Prediction
from workers.elasticsearch_index import CATEGORY_LEVELS, PATH_SEPARATOR
from workers.sink import SinkMessage

NORMALISED_FIELDS = (
    "network",
    "merchant",
    "title",
    "description",
    "brand",
    "raw_category",
    "gender",
    "size",
    "colour",
    "price",
    "currency",
    "warnings",
    "image_urls",
    "url",
    "extra",
    "raw",
    "fingerprint",
)
PREDICTION_GROUP = ("category", "prediction")
OFFER_GROUP = ("offer_group",)  # written from products.matches (issue 12)

M = TypeVar("M", NormalisedProduct, Prediction, OfferGroup)


@dataclass(frozen=True, slots=True)
class NormalisedUpsert:
    version: int
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PredictionUpdate:
    version: tuple[int, int]
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OfferUpdate:
    """The product's offer group; ``version`` is ``(updated_at it was made for, matched_at)``."""

    version: tuple[int, int]
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ProductDelete:
    """``version`` None: delete whatever is stored (the producer gave no time)."""

    version: int | None


SinkEvent = NormalisedUpsert | PredictionUpdate | OfferUpdate | ProductDelete


def decode(
    message: SinkMessage,
    normalised_topic: str,
    predictions_topic: str,
    matches_topic: str | None = None,
) -> SinkEvent | None:
    """The sink event a record carries; None when it needs no write."""
    product_id = message.product_id
    if not product_id:
        raise InvalidMessage(
            f"record at {message.topic}[{message.partition}]@{message.offset} has no key; "
            "producers must key product events by product_id"
        )
    if message.topic == normalised_topic:
        if message.value is None:
            return ProductDelete(version=None)
        product = _parse(NormalisedProduct, message, product_id)
        version = _version(product.updated_at, message)
        if product.op == "delete":
            return ProductDelete(version=None if product.updated_at is None else version)
        return NormalisedUpsert(version=version, fields=normalised_fields(product))
    if message.topic == predictions_topic:
        if message.value is None:
            return None
        prediction = _parse(Prediction, message, product_id)
        made_for = _version(prediction.updated_at, message)
        return PredictionUpdate(
            version=(made_for, prediction.predicted_at), fields=prediction_fields(prediction)
        )
    if matches_topic is not None and message.topic == matches_topic:
        if message.value is None:
            return None  # the product's normalised delete removes the document
        group = _parse(OfferGroup, message, product_id)
        return OfferUpdate(
            version=(_version(group.updated_at, message), group.matched_at),
            fields={"offer_group": group.offer_group},
        )
    raise InvalidMessage(
        f"topic {message.topic!r} is not one the Elasticsearch sink reads "
        f"({normalised_topic}, {predictions_topic}); check the sink's subscription"
    )


def _parse(model: type[M], message: SinkMessage, product_id: str) -> M:
    try:
        event = model.model_validate_json(message.value or b"")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise InvalidMessage(
            f"not a valid {model.__name__} ({where}: {first['msg']}); "
            f"fix the producer of {message.topic} to follow schemas/json",
            error_class="SchemaError",
        ) from exc
    if event.product_id != product_id:
        raise InvalidMessage(
            f"key {product_id!r} differs from product_id {event.product_id!r}; "
            "key every product event by its product_id"
        )
    return event


def _version(updated_at: int | None, message: SinkMessage) -> int:
    # External versions must be non-negative; a pre-1970 timestamp is a feed bug.
    return max(0, updated_at if updated_at is not None else message.timestamp_ms)


def normalised_fields(product: NormalisedProduct) -> dict[str, Any]:
    fields: dict[str, Any] = {"product_id": product.product_id}
    if product.updated_at is not None:
        fields["updated_at"] = product.updated_at
    for name in NORMALISED_FIELDS:
        value = getattr(product, name)
        if value not in (None, [], {}, ""):
            fields[name] = value
    if product.category_path:
        fields["feed_category"] = category_fields(product.category_path)
    return fields


def prediction_fields(prediction: Prediction) -> dict[str, Any]:
    top = prediction.top_category or (prediction.categories[-1] if prediction.categories else None)
    fields: dict[str, Any] = {
        "prediction": {
            "model_name": prediction.model_name,
            "model_version": prediction.model_version,
            "score": top.score if top else None,
            "confidence": prediction.confidence,
            "uncertainty": prediction.uncertainty,
            "needs_review": prediction.needs_review,
            "image_failed": prediction.image_failed,
            "carried_forward": prediction.carried_forward,
            "fingerprint": prediction.fingerprint,
            "updated_at": prediction.updated_at,
            "predicted_at": prediction.predicted_at,
            "categories": [c.model_dump() for c in prediction.categories],
        }
    }
    if top is not None:
        fields["category"] = predicted_category(top, prediction.categories)
    return fields


def predicted_category(top: CategoryScore, chain: list[CategoryScore]) -> dict[str, Any]:
    ids = [c.id for c in chain if c.level <= top.level] or [top.id]
    return {**category_fields(top.path.split(PATH_SEPARATOR)), "id": top.id, "ids": ids}


def category_fields(path: list[str]) -> dict[str, Any]:
    """``["A", "B"]`` → path "A > B", level 2, l1 "A", l2 "A > B" (each level a full path)."""
    parts = [p.strip() for p in path if p.strip()]
    fields: dict[str, Any] = {"path": PATH_SEPARATOR.join(parts), "level": len(parts)}
    for depth in range(1, min(len(parts), CATEGORY_LEVELS) + 1):
        fields[f"l{depth}"] = PATH_SEPARATOR.join(parts[:depth])
    return fields
