"""The inference step's paths that need no model: deletes, carried-forward predictions,
and which Triton calls a batch makes (one product_pipeline request, or the direct ones)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from catstream.metrics import PIPELINE_FALLBACKS
from catstream.settings import Settings
from schemas.events import NormalisedProduct, Prediction
from streams.image_embedding import FetchedImages
from streams.inference import BatchOutputs, InferenceStep
from triton_models.triton_client import TritonRequestInvalid, TritonServerError

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


class PipelineTriton:
    """Answers ``product_pipeline`` as the model does, or fails with ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, Any]] = []

    async def infer(
        self, model: str, inputs: Any, outputs: Any, model_version: str = "", parameters: Any = None
    ) -> dict[str, Any]:
        self.calls.append((model, parameters))
        if self.error is not None:
            raise self.error
        rows = len(inputs["TITLE"])
        ok = np.array([[bool(row[0])] for row in inputs["IMAGE"]])
        return {
            "TOP_IDS": np.full((rows, 5), 7),
            "TOP_SCORES": np.full((rows, 5), 0.2, dtype=np.float32),
            "PREDICTED_ID": np.full((rows, 1), 7),
            "CONFIDENCE": np.full((rows, 1), 0.9, dtype=np.float32),
            "TEXT_EMBEDDING": np.zeros((rows, 384), dtype=np.float32),
            "PATH_SCORES": np.ones((rows, 2), dtype=np.float32),
            "IMAGE_EMBEDDING": np.where(ok, 1.0, 0.0) * np.ones((rows, 1280), dtype=np.float32),
            "IMAGE_OK": ok & np.array([[row[0] != b"junk"] for row in inputs["IMAGE"]]),
        }


def _pipeline_step(triton: PipelineTriton, model: str = "product_pipeline") -> InferenceStep:
    none: Any = None
    return InferenceStep(Settings(product_pipeline_model=model), none, none, none, none, triton)


PRODUCTS = [NormalisedProduct(product_id=f"p{i}", title=f"toy {i}") for i in range(4)]
# Fetched, none (no URL), fetch failed, fetched but does not decode.
FETCHED = FetchedImages([b"jpeg", None, None, b"junk"], [False, False, True, False])
METADATA: Any = SimpleNamespace(version=3)


def test_the_batch_goes_to_triton_in_one_request_pinned_to_the_served_version() -> None:
    triton = PipelineTriton()
    answered = asyncio.run(_pipeline_step(triton)._through_pipeline(PRODUCTS, FETCHED, METADATA))
    assert answered is not None
    results, images = answered
    assert triton.calls == [("product_pipeline", {"categoriser_version": 3})]
    assert [product.product_id for product, _ in results] == ["p0", "p1", "p2", "p3"]
    assert results[0][1].predicted_id == 7
    # A fetch that failed and an image that did not decode are both flagged.
    assert images.failed == [False, False, True, True]
    assert images.mask.reshape(-1).tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "error", [TritonServerError("categoriser: INTERNAL"), TritonRequestInvalid("bad shape")]
)
def test_a_failing_pipeline_sends_the_batch_to_the_models_directly(error: Exception) -> None:
    # Through BLS the categoriser's INVALID_ARG arrives as INTERNAL (server#7804): only
    # the direct calls can tell a product the categoriser rejects from a server fault.
    before = PIPELINE_FALLBACKS._value.get()
    triton = PipelineTriton(error)
    answered = asyncio.run(_pipeline_step(triton)._through_pipeline(PRODUCTS, FETCHED, METADATA))
    assert answered is None
    assert len(triton.calls) == 1  # not retried: the direct calls take over
    assert PIPELINE_FALLBACKS._value.get() == before + 1


def test_without_a_pipeline_model_the_worker_calls_the_models_itself() -> None:
    triton = PipelineTriton()
    step = _pipeline_step(triton, model="")
    assert asyncio.run(step._through_pipeline(PRODUCTS, FETCHED, METADATA)) is None
    assert triton.calls == []
