"""The inference step's paths that need no model: deletes and carried-forward predictions."""

from __future__ import annotations

import asyncio
from typing import Any

from catstream.settings import Settings
from schemas.events import NormalisedProduct, Prediction
from streams.inference import InferenceStep

LAST = Prediction(
    product_id="p",
    model_name="categoriser",
    model_version="3",
    confidence=0.8,
    uncertainty=0.2,
    needs_review=False,
    fingerprint="f",
    updated_at=1,
)


def _step() -> InferenceStep:
    none: Any = None  # the model-side collaborators are never reached on these paths
    return InferenceStep(Settings(), none, none, none, none, none)


def test_deletes_tombstone_and_unchanged_products_carry_their_prediction_forward() -> None:
    table: dict[str, Any] = {
        "text": LAST.model_dump_json(),  # stored as JSON text today
        "dict": LAST.model_dump(mode="json"),  # as older changelogs hold it
    }
    products = [
        NormalisedProduct(product_id="gone", op="delete", updated_at=5),
        NormalisedProduct(product_id="text", changed=False, fingerprint="f", updated_at=7),
        NormalisedProduct(product_id="dict", changed=False, fingerprint="f", updated_at=8),
    ]
    out = asyncio.run(_step().run(products, table.get))
    assert out.predictions[0] == ("gone", None)
    assert out.embeddings == [("gone", None)]
    assert out.last_predictions == {"gone": None}  # the agent drops it from its table
    carried = {pid: p for pid, p in out.predictions[1:]}
    for pid, updated_at in (("text", 7), ("dict", 8)):
        prediction = carried[pid]
        assert prediction is not None
        assert prediction.carried_forward
        assert prediction.updated_at == updated_at
        assert prediction.confidence == 0.8
