"""Calling the ``categoriser`` Triton model for a micro-batch, and reading its answer.

The request/response layout is the model's contract (see
``triton_models/repository/categoriser/config.pbtxt``). The worker pins the
model version whose metadata (label map, thresholds) it loaded, so scores are
always read with the label map they were produced with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from catstream.taxonomy import Taxonomy
from normaliser.google_category import google_category_path
from schemas.events import CategoryScore, NormalisedProduct, Prediction, now_ms
from triton_models.categoriser.metadata import ModelMetadata
from triton_models.triton_client import TritonClient

IMAGE_DIM = 1280  # the image_encoder's embedding, the categoriser's IMAGE_EMBEDDING input


@dataclass(frozen=True)
class ImageEmbeddings:
    """Per product of a batch: embedding (zeros when absent), mask, and failure flag."""

    vectors: npt.NDArray[np.float32]  # (n, 1280)
    mask: npt.NDArray[np.float32]  # (n, 1)
    failed: list[bool]  # had an image URL, but no embedding came of it


OUTPUTS = [
    "PROBABILITIES",
    "TOP_IDS",
    "TOP_SCORES",
    "PREDICTED_ID",
    "CONFIDENCE",
    "TEXT_EMBEDDING",
    "PATH_SCORES",
]
# What the stream reads. PROBABILITIES holds a float per label (5,582 with the zero-shot
# prior over the Google taxonomy: 22 KB a product through gRPC), and a prediction needs
# only the scores of its accepted path, which PATH_SCORES carries (issue 10: ask only for
# the outputs you read).
STREAM_OUTPUTS = [name for name in OUTPUTS if name != "PROBABILITIES"]
# ``product_pipeline`` (triton_models/repository/product_pipeline) answers with the image
# encoder's outputs too, and scores with the categoriser version this parameter names.
PIPELINE_IMAGE_OUTPUTS = ["IMAGE_EMBEDDING", "IMAGE_OK"]
PIPELINE_VERSION_PARAMETER = "categoriser_version"


@dataclass(frozen=True)
class Categorised:
    """The categoriser's answer for one product."""

    # Label-map order, hierarchy-consistent; None unless PROBABILITIES was asked for.
    probabilities: npt.NDArray[np.float32] | None
    # The scores of the accepted path, root first (zeros after its depth).
    path_scores: npt.NDArray[np.float32]
    top_ids: list[int]
    top_scores: list[float]
    predicted_id: int | None  # deepest category passing its threshold
    confidence: float
    # A row of the batch's output, kept as float32: it is only packed for the wire
    # (schemas.vectors) and compared, and a Python list of 384 floats per product cost
    # a conversion each way.
    text_embedding: npt.NDArray[np.float32]


def _text(values: list[str | None]) -> npt.NDArray[np.object_]:
    return np.array([[(v or "").encode("utf-8")] for v in values], dtype=np.object_)


def raw_category_text(product: NormalisedProduct) -> str:
    """RAW_CATEGORY: the feed's category path, then the Google category it names, if any.

    A ``google_product_category`` (an id or a path, in ``extra``) is sent as its
    Google path, so the model reads it as a feature; training builds the same text
    (``training.dataset.product_fields``).
    """
    merchant = " > ".join(product.category_path) or (product.raw_category or "")
    google = google_category_path(product.extra)
    if not google or google == merchant:
        return merchant
    return f"{merchant} | {google}" if merchant else google


def request_inputs(
    products: list[NormalisedProduct], images: ImageEmbeddings | None
) -> dict[str, npt.NDArray[np.generic]]:
    """The model's inputs for a batch of normalised products (text only without ``images``)."""
    inputs: dict[str, npt.NDArray[np.generic]] = {
        "TITLE": _text([p.title for p in products]),
        "DESCRIPTION": _text([p.description for p in products]),
        "BRAND": _text([p.brand for p in products]),
        "RAW_CATEGORY": _text([raw_category_text(p) for p in products]),
    }
    if images is not None:
        inputs["IMAGE_EMBEDDING"] = images.vectors
        inputs["IMAGE_MASK"] = images.mask
    return inputs


async def categorise(
    triton: TritonClient,
    model: str,
    version: int,
    products: list[NormalisedProduct],
    images: ImageEmbeddings,
    outputs: Sequence[str] = STREAM_OUTPUTS,
) -> list[Categorised]:
    answer = await triton.infer(
        model, request_inputs(products, images), list(outputs), model_version=str(version)
    )
    return _read_answer(answer, len(products))


async def categorise_with_images(
    triton: TritonClient,
    pipeline_model: str,
    version: int,
    products: list[NormalisedProduct],
    images: Sequence[bytes | None],
    outputs: Sequence[str] = STREAM_OUTPUTS,
) -> tuple[list[Categorised], ImageEmbeddings]:
    """One ``product_pipeline`` request: the image encoder, then categoriser ``version``.

    ``images`` holds each product's encoded image, None where it has none. The
    embeddings come back with the scores; ``failed`` marks the images that did not decode.
    """
    inputs = request_inputs(products, None)
    inputs["IMAGE"] = np.array([[data or b""] for data in images], dtype=np.object_)
    answer = await triton.infer(
        pipeline_model,
        inputs,
        [*outputs, *PIPELINE_IMAGE_OUTPUTS],
        parameters={PIPELINE_VERSION_PARAMETER: version},
    )
    ok = answer["IMAGE_OK"].reshape(-1)
    embeddings = ImageEmbeddings(
        vectors=answer["IMAGE_EMBEDDING"],
        mask=ok.astype(np.float32).reshape(-1, 1),
        failed=[data is not None and not bool(good) for data, good in zip(images, ok, strict=True)],
    )
    return _read_answer(answer, len(products)), embeddings


def _read_answer(answer: dict[str, npt.NDArray[Any]], count: int) -> list[Categorised]:
    probabilities = answer.get("PROBABILITIES")
    results = []
    for row in range(count):
        predicted = int(answer["PREDICTED_ID"][row][0])
        results.append(
            Categorised(
                probabilities=None if probabilities is None else probabilities[row],
                path_scores=answer["PATH_SCORES"][row],
                top_ids=[int(v) for v in answer["TOP_IDS"][row]],
                top_scores=[float(v) for v in answer["TOP_SCORES"][row]],
                predicted_id=predicted if predicted >= 0 else None,
                confidence=float(answer["CONFIDENCE"][row][0]),
                text_embedding=answer["TEXT_EMBEDDING"][row],
            )
        )
    return results


def _category_score(taxonomy: Taxonomy, category_id: int, score: float) -> CategoryScore:
    # Built, not validated (scores are clamped here): the consumer of the event validates
    # it once, on receipt (issue 10: one validation per product per hop).
    return CategoryScore.model_construct(
        id=category_id,
        path=taxonomy.path_str(category_id),
        score=min(1.0, max(0.0, score)),
        level=taxonomy.level(category_id),
    )


def accepted_path(
    taxonomy: Taxonomy, metadata: ModelMetadata, result: Categorised
) -> list[CategoryScore]:
    """The accepted category and all its ancestors, root first (empty when none passed)."""
    if result.predicted_id is None:
        return []
    ids = taxonomy.ancestors_and_self(result.predicted_id)
    scores = result.path_scores.tolist()
    return [
        _category_score(taxonomy, cid, scores[depth] if depth < len(scores) else 0.0)
        for depth, cid in enumerate(ids)
    ]


def candidates(
    taxonomy: Taxonomy, metadata: ModelMetadata, result: Categorised
) -> list[CategoryScore]:
    """The top-5 leaf candidates with their scores, best first."""
    return [
        _category_score(taxonomy, cid, score)
        for cid, score in zip(result.top_ids, result.top_scores, strict=True)
        if cid >= 0
    ]


def top_category(
    taxonomy: Taxonomy,
    metadata: ModelMetadata,
    result: Categorised,
    path: list[CategoryScore] | None = None,
) -> CategoryScore | None:
    """The deepest accepted category; without one, the best leaf candidate.

    The fallback still places the product for similarity search and review; the
    prediction accepts no category (``categories`` stays empty). ``path`` is
    ``accepted_path``'s answer when the caller already has it.
    """
    if path is None:
        path = accepted_path(taxonomy, metadata, result)
    if path:
        return path[-1]
    if result.top_ids and result.top_ids[0] >= 0:
        return _category_score(taxonomy, result.top_ids[0], result.top_scores[0])
    return None


def build_prediction(
    product: NormalisedProduct,
    result: Categorised,
    metadata: ModelMetadata,
    taxonomy: Taxonomy,
    *,
    model_name: str,
    uncertainty: float,
    needs_review: bool,
    image_failed: bool = False,
) -> Prediction:
    """The ``products.predictions`` event for one categorised product.

    Built, not validated: its inputs are the validated product and the model's clamped
    scores, and whoever reads the topic validates it once (one validation per hop).
    """
    path = accepted_path(taxonomy, metadata, result)
    # Every field given: model_construct computes a missing default_factory's value
    # with an inspect.signature call (pydantic 2.14), half of this function's cost.
    return Prediction.model_construct(
        product_id=product.product_id,
        model_name=model_name,
        model_version=str(metadata.version),
        categories=path,
        top_category=top_category(taxonomy, metadata, result, path),
        confidence=min(1.0, max(0.0, result.confidence)),
        uncertainty=uncertainty,
        needs_review=needs_review,
        fingerprint=product.fingerprint,
        updated_at=product.updated_at,
        image_failed=image_failed,
        carried_forward=False,
        predicted_at=now_ms(),
    )
