"""The inference step's paths that need no model: deletes and carried-forward predictions."""

from __future__ import annotations

import asyncio
from typing import Any

from catstream.settings import Settings
from schemas.events import NormalisedProduct, Prediction
from streams.inference import BatchOutputs, InferenceStep

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


class InferringStep(InferenceStep):
    """Categorises every product it is asked to infer (no Triton): the ordering under
    test is ``run``'s, not the model's."""

    def __init__(self) -> None:
        super().__init__(Settings(), *([None] * 5))  # type: ignore[arg-type]
        self.inferred: list[str] = []

    async def _infer(
        self, products: list[NormalisedProduct], out: BatchOutputs
    ) -> dict[int, BatchOutputs]:
        slices: dict[int, BatchOutputs] = {}
        for product in products:
            self.inferred.append(product.product_id)
            one = slices[id(product)] = BatchOutputs()
            prediction = LAST.model_copy(
                update={
                    "product_id": product.product_id,
                    "fingerprint": product.fingerprint,
                    "updated_at": product.updated_at,
                }
            )
            one.predictions.append((product.product_id, prediction))
            one.last_predictions[product.product_id] = prediction.model_dump_json()
        return slices


def test_outputs_follow_input_order_per_product() -> None:
    # Before: a batch's deletes and carried-forward predictions came out before its
    # inferred ones, so "upsert then delete" of one product ended with the upsert and
    # the deleted product came back in Milvus and Elasticsearch.
    table: dict[str, Any] = {
        "same": LAST.model_copy(update={"product_id": "same"}).model_dump_json()
    }
    products = [
        NormalisedProduct(product_id="a", fingerprint="f1", updated_at=1),
        NormalisedProduct(product_id="same", changed=False, fingerprint="f", updated_at=2),
        NormalisedProduct(product_id="a", op="delete", updated_at=3),
        NormalisedProduct(product_id="same", op="delete", updated_at=4),
        NormalisedProduct(product_id="b", op="delete", updated_at=5),
        NormalisedProduct(product_id="b", fingerprint="f2", updated_at=6),
    ]
    step = InferringStep()
    out = asyncio.run(step.run(products, table.get))
    got = [(pid, p.updated_at if p else None) for pid, p in out.predictions]
    assert got == [("a", 1), ("same", 2), ("a", None), ("same", None), ("b", None), ("b", 6)]
    assert [pid for pid, _ in out.embeddings] == ["a", "same", "b"]
    assert out.last_predictions["a"] is None  # the table ends as the stream does
    assert out.last_predictions["same"] is None
    assert out.last_predictions["b"] is not None


def test_an_unchanged_event_after_its_product_changed_in_the_same_batch_is_inferred() -> None:
    # The table's last prediction is for the version before the batch's change: carrying
    # it forward would publish an old prediction under the newest updated_at.
    table: dict[str, Any] = {"p": LAST.model_dump_json()}
    products = [
        NormalisedProduct(product_id="p", fingerprint="new", updated_at=5),
        NormalisedProduct(product_id="p", changed=False, fingerprint="new", updated_at=6),
    ]
    step = InferringStep()
    out = asyncio.run(step.run(products, table.get))
    assert step.inferred == ["p", "p"]
    assert [p.fingerprint for _, p in out.predictions if p] == ["new", "new"]


def test_an_unchanged_event_whose_last_prediction_is_for_another_fingerprint_is_inferred() -> None:
    # Chaos run: the prediction of version B was lost, the table still held version A's;
    # B's replay was "unchanged" (normalise had seen B) and carried A's prediction
    # forward under B's updated_at, so the stores kept an older version for good.
    table: dict[str, Any] = {"p": LAST.model_dump_json()}  # fingerprint "f"
    product = NormalisedProduct(product_id="p", changed=False, fingerprint="g", updated_at=9)
    step = InferringStep()
    out = asyncio.run(step.run([product], table.get))
    assert step.inferred == ["p"]
    ((_, prediction),) = out.predictions
    assert prediction is not None
    assert prediction.fingerprint == "g"
    assert not prediction.carried_forward
