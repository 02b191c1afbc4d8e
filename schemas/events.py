"""The event contracts between catstream's stages, one model per topic.

These pydantic models are the source of truth; ``schemas/json/*.schema.json``
are generated from them (``python -m schemas.export``) and a contract test
fails when the two drift apart. Every event carries ``schema_version`` so a
consumer can refuse (dead-letter) a version it does not understand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.vectors import ENCODING_DOC, Vector

SCHEMA_VERSION = 1
PRODUCT_ID_MAX = 256

ProductId = str


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def parse_updated_at(value: str | int | float | None) -> int | None:
    """RFC 3339 text or epoch milliseconds → epoch milliseconds (None stays None).

    Raises ValueError with the accepted forms when the value is neither.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("updated_at must be RFC 3339 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"updated_at {value!r} is not RFC 3339 (e.g. 2024-05-01T12:00:00Z) or epoch ms"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class Event(BaseModel):
    """Base of every event: versioned, and strict about types."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)


# --------------------------------------------------------------------------- raw


class RawProduct(Event):
    """``products.raw``: one product as a feed sent it, keyed by ``product_id``."""

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    op: Literal["upsert", "delete"] = "upsert"
    updated_at: str | int | None = Field(
        default=None, description="RFC 3339 text or epoch milliseconds"
    )
    network: str | None = None
    merchant: str | None = None
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    raw_category: str | None = None
    gender: str | None = None
    size: str | None = None
    colour: str | None = None
    price: str | float | int | None = None
    currency: str | None = None
    image_urls: list[str] = Field(default_factory=list)
    url: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _keep_unknown_fields_in_extra(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(cls.model_fields)
        unknown = {k: v for k, v in data.items() if k not in known}
        if not unknown:
            return data
        kept = {k: v for k, v in data.items() if k in known}
        extra = dict(kept.get("extra") or {})
        extra.update(unknown)
        kept["extra"] = extra
        return kept

    @field_validator("image_urls", mode="before")
    @classmethod
    def _single_url_is_a_list(cls, value: Any) -> Any:
        # Feeds often send one image as a bare string; that is not a type error.
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value.strip() else []
        return value

    @field_validator("updated_at")
    @classmethod
    def _updated_at_is_parseable(cls, value: str | int | None) -> str | int | None:
        parse_updated_at(value)
        return value

    @field_validator("product_id")
    @classmethod
    def _product_id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("product_id is blank; every product needs a stable id")
        return value


# -------------------------------------------------------------------- normalised


class NormalisedProduct(Event):
    """``products.normalised``: cleaned fields beside the raw ones, plus change detection."""

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    op: Literal["upsert", "delete"] = "upsert"
    updated_at: int | None = Field(default=None, description="epoch milliseconds")
    network: str | None = None
    merchant: str | None = None
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    raw_category: str | None = None
    category_path: list[str] = Field(default_factory=list)
    gender: str | None = None
    size: str | None = None
    colour: str | None = None
    price: str | None = Field(default=None, description="decimal as text, e.g. '1299.00'")
    currency: str | None = Field(default=None, description="ISO 4217 code")
    warnings: list[str] = Field(default_factory=list)
    image_urls: list[str] = Field(default_factory=list)
    url: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] = Field(default_factory=dict, description="the raw fields as received")
    fingerprint: str = ""
    changed: bool = True


# ------------------------------------------------------------------- predictions


class CategoryScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    path: str
    score: float = Field(ge=0.0, le=1.0)
    level: int = Field(ge=1)


class Prediction(Event):
    """``products.predictions``: categories for one product (tombstone on delete)."""

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    model_name: str
    model_version: str
    categories: list[CategoryScore] = Field(
        default_factory=list,
        description="accepted categories, ancestors included, ordered root to leaf",
    )
    top_category: CategoryScore | None = None
    confidence: float = Field(ge=0.0, le=1.0)
    uncertainty: float = Field(ge=0.0)
    needs_review: bool
    fingerprint: str
    updated_at: int | None = None
    image_failed: bool = False
    carried_forward: bool = False
    predicted_at: int = Field(default_factory=now_ms)


class ProductEmbedding(Event):
    """``products.embeddings``: vectors for similarity search (tombstone on delete)."""

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    model_version: str
    text_embedding: Vector = Field(description="text vector (384 for MiniLM); " + ENCODING_DOC)
    image_embedding: Vector | None = Field(
        default=None, description="image vector (1,280 for EfficientNet-Lite0); " + ENCODING_DOC
    )
    category_ids: list[int] = Field(
        default_factory=list, description="top category's path ids, root first"
    )
    category_path: list[str] = Field(default_factory=list)
    fingerprint: str
    updated_at: int | None = None


# ------------------------------------------------------------- review and labels


class ReviewItem(Event):
    """``products.review``: a low-confidence product for a human labeller."""

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    uncertainty: float = Field(ge=0.0)
    measure: Literal["margin", "entropy", "probability"]
    candidates: list[CategoryScore] = Field(max_length=5)
    model_version: str
    fingerprint: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    raw_category: str | None = None
    image_urls: list[str] = Field(default_factory=list)
    url: str | None = None
    created_at: int = Field(default_factory=now_ms)
    # --- review app (issue 11) ---
    merchant: str | None = None
    price: str | None = Field(default=None, description="decimal as text, e.g. '12.99'")
    currency: str | None = None
    random_sample: bool = Field(
        default=False,
        description="sent as a random sample, not for its uncertainty: its label is holdout "
        "data (never trained on)",
    )


Verdict = Literal["category", "not_a_product", "cant_tell"]


class Label(Event):
    """``products.labels``: a human's category for a product (exclusive label).

    ``verdict`` other than ``category`` ("not a product", "can't tell") carries no
    category (``""``); training and evaluation leave such labels out.
    """

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    category: str | int = Field(description="taxonomy path 'A > B > C' or taxonomy id")
    labeller: str = "unknown"
    labelled_at: int = Field(default_factory=now_ms)
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    raw_category: str | None = None
    image_urls: list[str] = Field(default_factory=list)
    # --- review app (issue 11) ---
    verdict: Verdict = "category"
    random_sample: bool = Field(
        default=False, description="the product was a random review sample: holdout data"
    )
    model_version: str | None = Field(
        default=None, description="the categoriser version whose candidates the labeller saw"
    )

    @model_validator(mode="after")
    def _category_matches_verdict(self) -> Label:
        blank = isinstance(self.category, str) and not self.category.strip()
        if self.verdict == "category" and blank:
            raise ValueError("category is blank: give a taxonomy path or id (or a verdict)")
        if self.verdict != "category" and not blank:
            raise ValueError(f"a {self.verdict!r} label carries no category; send category ''")
        return self

    @property
    def has_category(self) -> bool:
        return self.verdict == "category"


# ------------------------------------------------------------------ model decisions


class ModelDecision(Event):
    """``products.models``: what ``catstream retrain`` decided, with both holdout scores."""

    model_name: str = "categoriser"
    challenger_version: int = Field(ge=1)
    champion_version: int | None = Field(default=None, ge=1)
    decision: Literal["promoted", "kept_champion"]
    served_version: int = Field(ge=1, description="the version served after the decision")
    metric: str = "leaf_accuracy"
    champion_score: float | None = Field(default=None, ge=0.0, le=1.0)
    challenger_score: float = Field(ge=0.0, le=1.0)
    margin: float = Field(description="how much better the challenger had to be")
    holdout_size: int = Field(ge=0)
    training_labels: int = Field(ge=0)
    reason: str
    decided_at: int = Field(default_factory=now_ms)


# ------------------------------------------------------------------ dead letters


class DeadLetter(Event):
    """``products.deadletter``: an input that could not be processed, and why."""

    original_b64: str = Field(
        description="the original message value, base64; only its first bytes when "
        "original_truncated (the whole message is original_length bytes)"
    )
    original_length: int | None = Field(
        default=None, ge=0, description="length in bytes of the original message value"
    )
    original_sha256: str | None = Field(
        default=None, description="hex sha256 of the whole original message value"
    )
    original_truncated: bool = Field(
        default=False,
        description="true when original_b64 holds only the start of the value (it was "
        "over the dead-letter size limit); such a letter cannot be replayed",
    )
    key_b64: str | None = None
    source_topic: str
    partition: int
    offset: int
    stage: str
    error_class: str
    reason: str = Field(min_length=1, description="what is wrong and what to do about it")
    timestamp: int = Field(default_factory=now_ms)


# ---------------------------------------------------------------- offer groups


class OfferMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    score: float = Field(ge=0.0, le=1.0, description="the matcher's P(same product)")


class OfferGroup(Event):
    """``products.matches``: the offer group of one product (tombstone on delete).

    ``offer_group`` is stable across re-feeds: a group keeps the id most of its
    members had, and a new group takes its smallest member's product id. A
    product that matches nothing is a group of one (``offer_group`` = its own id).
    """

    product_id: ProductId = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    offer_group: str = Field(min_length=1, max_length=PRODUCT_ID_MAX)
    members: list[ProductId] = Field(
        default_factory=list, description="every product of the group, this one included"
    )
    matches: list[OfferMatch] = Field(
        default_factory=list, description="this product's accepted pairs (its edges)"
    )
    matcher_version: str
    updated_at: int | None = Field(default=None, description="the product's updated_at")
    matched_at: int = Field(default_factory=now_ms)


TOPIC_MODELS: dict[str, type[Event]] = {
    "raw": RawProduct,
    "normalised": NormalisedProduct,
    "predictions": Prediction,
    "embeddings": ProductEmbedding,
    "review": ReviewItem,
    "labels": Label,
    "deadletter": DeadLetter,
    "models": ModelDecision,
    "matches": OfferGroup,
}
