"""Each product is validated once per hop: when a stage reads it off its topic.

What a stage builds from validated input (the normalised product, the prediction, its
category scores, the embeddings event, a carried-forward prediction) is not validated
again; the next stage validates it on receipt. The counter wraps every event model's
pydantic validator, which ``__init__``, ``model_validate`` and ``model_validate_json``
all go through (nested models are validated inside their parent's call).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from catstream.settings import Settings
from catstream.taxonomy import load_taxonomy
from schemas import events
from schemas.events import NormalisedProduct, Prediction, ProductEmbedding
from streams.agents.infer import _decode
from streams.agents.normalise import NormaliseStep
from streams.inference import BatchOutputs, InferenceStep
from tests.unit.stream_harness import MemoryTopic, Message, raw_message
from triton_models.categoriser.contract import Categorised, ImageEmbeddings


class CountingValidator:
    """Delegates to a model's validator and counts its validations."""

    def __init__(self, name: str, inner: Any, counts: Counter[str]) -> None:
        self.name, self.inner, self.counts = name, inner, counts

    def validate_python(self, *args: Any, **kwargs: Any) -> Any:
        self.counts[self.name] += 1
        return self.inner.validate_python(*args, **kwargs)

    def validate_json(self, *args: Any, **kwargs: Any) -> Any:
        self.counts[self.name] += 1
        return self.inner.validate_json(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    models = [
        m
        for m in vars(events).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == events.__name__
    ]
    for model in models:
        wrapped = CountingValidator(model.__name__, model.__pydantic_validator__, counts)
        monkeypatch.setattr(model, "__pydantic_validator__", wrapped)
    return counts


RAW = {
    "product_id": "p1",
    "updated_at": "2024-05-01T12:00:00Z",
    "title": "Wooden train set",
    "description": "Forty pieces",
    "brand": "ACME",
    "raw_category": "Toys > Trains",
    "price": "12,50",
    "currency": "EUR",
    "image_urls": "http://img/1.jpg",
    "colour": "red",
}


def test_the_normalise_hop_validates_each_product_once(validations: Counter[str]) -> None:
    # Before: RawProduct on decode, then NormalisedProduct again when normalise_product
    # built it: 2 per product.
    normalised = MemoryTopic()
    step = NormaliseStep(Settings(), {}, normalised, MemoryTopic())

    async def handle() -> list[str]:
        # A new price each time: published as unchanged (an identical one is not published).
        return [
            await step.handle(raw_message(i, b"p1", {**RAW, "price": f"12,5{i}"})) for i in range(3)
        ]

    assert asyncio.run(handle()) == ["changed", "unchanged", "unchanged"]
    assert validations == Counter({"RawProduct": 3})
    # What it published without validating is still a valid event of its topic.
    for _, value in normalised.sent:
        assert NormalisedProduct.model_validate_json(value or b"").title == "Wooden train set"


class EverySpace:
    """A label space holding every category, each scored by the first probability."""

    def __contains__(self, category_id: object) -> bool:
        return True

    def index(self, category_id: int) -> int:
        return 0


def _step(taxonomy: Any) -> InferenceStep:
    model = SimpleNamespace(taxonomy_for=lambda metadata: None)
    none: Any = None
    return InferenceStep(Settings(), taxonomy, model, none, none, none)  # type: ignore[arg-type]


def test_the_infer_hop_validates_a_categorised_product_once(validations: Counter[str]) -> None:
    # Before: the prediction, each of its category scores and the embeddings event were
    # validated as they were built: 1 + 1 + 1 + ~9 per product.
    settings = Settings()
    taxonomy = load_taxonomy(settings.taxonomy_path)
    leaf = max(taxonomy.leaves(), key=taxonomy.level)  # a deep one: several scores
    value = NormalisedProduct(product_id="p1", title="Train", fingerprint="f").model_dump_json()
    validations.clear()
    product = _decode(Message("products.normalised", 0, 0, b"p1", value.encode()))
    metadata: Any = SimpleNamespace(version=1, space=EverySpace())
    result = Categorised(
        probabilities=None,
        path_scores=np.full(taxonomy.level(leaf), 0.9, dtype=np.float32),
        top_ids=[leaf, -1],
        top_scores=[0.9, 0.0],
        predicted_id=leaf,
        confidence=0.9,
        text_embedding=np.full(384, 0.1, dtype=np.float32),
    )
    images = ImageEmbeddings(np.ones((1, 1280), np.float32), np.ones((1, 1), np.float32), [False])
    out = BatchOutputs()
    _step(taxonomy)._publish_one(product, result, images, 0, metadata, None, out)

    assert validations == Counter({"NormalisedProduct": 1})
    ((_, prediction),) = out.predictions
    ((_, embedding),) = out.embeddings
    assert prediction is not None
    assert embedding is not None
    again = Prediction.model_validate_json(prediction.model_dump_json())
    assert again.top_category is not None
    assert again.top_category.id == leaf
    assert ProductEmbedding.model_validate_json(embedding.model_dump_json()).category_ids


def test_a_carried_forward_prediction_is_not_validated_again(validations: Counter[str]) -> None:
    last = Prediction(
        product_id="p1",
        model_name="categoriser",
        model_version="3",
        categories=[events.CategoryScore(id=1, path="Toys", score=0.9, level=1)],
        top_category=events.CategoryScore(id=1, path="Toys", score=0.9, level=1),
        confidence=0.9,
        uncertainty=0.1,
        needs_review=False,
        fingerprint="f",
        updated_at=1,
    ).model_dump_json()
    product = NormalisedProduct(product_id="p1", fingerprint="f", changed=False, updated_at=9)
    validations.clear()

    out = asyncio.run(_step(None).run([product], {"p1": last}.get))
    assert validations == Counter()
    ((_, carried),) = out.predictions
    assert carried is not None
    again = Prediction.model_validate_json(carried.model_dump_json())
    assert again.carried_forward
    assert again.updated_at == 9
    assert again.categories[0].path == "Toys"
