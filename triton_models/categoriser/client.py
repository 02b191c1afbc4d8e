"""Calling the Triton ``categoriser`` and turning its answer into ``Prediction`` events.

``categorise`` sends one batch (the request layout lives in
``contract``, which the stream worker uses too, so offline
prediction and the stream cannot diverge); ``to_prediction`` builds the event:
the accepted category and its ancestors root→leaf with their scores, the top
category, the confidence and a margin-based uncertainty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catstream.taxonomy import Taxonomy
from schemas.events import NormalisedProduct, Prediction
from triton_models.categoriser.contract import (
    IMAGE_DIM,
    STREAM_OUTPUTS,
    Categorised,
    ImageEmbeddings,
    build_prediction,
)
from triton_models.categoriser.contract import categorise as categorise_batch
from triton_models.categoriser.metadata import MODEL_NAME, ModelMetadata
from triton_models.triton_client import TritonClient

CategoriserOutput = Categorised


def image_inputs(count: int, embeddings: NDArray[Any] | None) -> ImageEmbeddings:
    """Image inputs for a batch: zero rows (mask 0) where a row is all zeros or absent."""
    if embeddings is None:
        vectors = np.zeros((count, IMAGE_DIM), dtype=np.float32)
    else:
        vectors = np.asarray(embeddings, dtype=np.float32).reshape(count, IMAGE_DIM)
    mask = (np.abs(vectors).sum(axis=1, keepdims=True) > 0).astype(np.float32)
    return ImageEmbeddings(vectors=vectors, mask=mask, failed=[False] * count)


async def categorise(
    client: TritonClient,
    products: list[NormalisedProduct],
    image_embeddings: NDArray[Any] | None,
    metadata: ModelMetadata,
    model: str = MODEL_NAME,
    outputs: Sequence[str] = STREAM_OUTPUTS,
) -> list[CategoriserOutput]:
    """One Triton call for the batch, pinned to ``metadata``'s version; ``outputs``
    adds PROBABILITIES when the caller reads every label's score."""
    if not products:
        return []
    images = image_inputs(len(products), image_embeddings)
    return await categorise_batch(client, model, metadata.version, products, images, outputs)


def margin_uncertainty(output: CategoriserOutput) -> float:
    """1 - (best leaf score - second best): 0 when sure, 1 when two leaves tie."""
    scores = [*output.top_scores, 0.0, 0.0]
    return float(min(1.0, max(0.0, 1.0 - (scores[0] - scores[1]))))


def to_prediction(
    product: NormalisedProduct,
    output: CategoriserOutput,
    metadata: ModelMetadata,
    taxonomy: Taxonomy,
    needs_review: bool | Callable[[NormalisedProduct, CategoriserOutput], bool] = False,
    model_name: str = MODEL_NAME,
    image_failed: bool = False,
) -> Prediction:
    """The prediction event, as the stream builds it, with a margin-based uncertainty."""
    review = needs_review(product, output) if callable(needs_review) else needs_review
    return build_prediction(
        product,
        output,
        metadata,
        taxonomy,
        model_name=model_name,
        uncertainty=margin_uncertainty(output),
        needs_review=review,
        image_failed=image_failed,
    )
