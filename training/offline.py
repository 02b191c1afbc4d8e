"""Offline categorisation through Triton, exactly as the stream does it.

Products are normalised with the stream's normaliser; image embeddings come from
the ``image_encoder`` Triton model (first image, fetched and cached like the
stream does); the ``categoriser`` is called in batches pinned to one version.
Shared by ``catstream predict`` and ``catstream evaluate``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from catstream.progress import on_terminal
from catstream.settings import Settings
from schemas.events import NormalisedProduct
from training.examples import normalised
from training.labels import LabelsError
from triton_models.categoriser.client import CategoriserOutput, categorise
from triton_models.categoriser.metadata import ModelMetadata
from triton_models.triton_client import TritonClient

BATCH = 64


def normalise_lines(lines: Sequence[tuple[str, dict[str, Any]]]) -> list[NormalisedProduct]:
    """(where, fields) pairs → normalised products; LabelsError names the bad line."""
    products = []
    for where, fields in lines:
        try:
            products.append(normalised(fields, where))
        except LabelsError:
            raise
        except ValueError as exc:
            raise LabelsError(f"{where}: {exc}; fix the line") from None
    return products


async def _predict(
    settings: Settings,
    products: list[NormalisedProduct],
    metadata: ModelMetadata,
    images: bool,
    progress: bool,
) -> tuple[list[CategoriserOutput], list[bool]]:
    triton = TritonClient.from_settings(settings)
    outputs: list[CategoriserOutput] = []
    failed: list[bool] = []
    embedder: Any = None
    fetcher: Any = None
    if images:
        from streams.image_embedding import ImageEmbedder
        from streams.images import ImageFetcher

        fetcher = ImageFetcher(settings)
        embedder = ImageEmbedder(settings, triton, fetcher)
    bar = tqdm(
        total=len(products), desc="categorising", unit="product", disable=not on_terminal(progress)
    )
    try:
        for start in range(0, len(products), BATCH):
            batch = products[start : start + BATCH]
            vectors = None
            if embedder is not None:
                embedded = await embedder.embed(batch)
                vectors = embedded.vectors
                failed.extend(embedded.failed)
            else:
                failed.extend([False] * len(batch))
            outputs.extend(
                await categorise(triton, batch, vectors, metadata, settings.categoriser_model)
            )
            bar.update(len(batch))
    finally:
        bar.close()
        if fetcher is not None:
            await fetcher.close()
        await triton.close()
    return outputs, failed


def predict_products(
    settings: Settings,
    products: list[NormalisedProduct],
    metadata: ModelMetadata,
    images: bool = True,
    progress: bool = True,
) -> tuple[list[CategoriserOutput], list[bool]]:
    """Categoriser outputs (and image-failed flags) for every product, in order."""
    return asyncio.run(_predict(settings, products, metadata, images, progress))
