"""Image embeddings for a micro-batch: fetch the first image of each product, encode on Triton.

Encoded by the ``image_encoder`` model (``encode``), or fetched only (``fetch``) when
``product_pipeline`` encodes them on the server in the categoriser's request.

A product whose image cannot be fetched or decoded is still categorised from
text; it is flagged ``image_failed`` and gets a zero embedding with mask 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catstream.logs import get_logger
from catstream.settings import Settings
from schemas.events import NormalisedProduct
from streams.images import FetchedImage, ImageFetcher
from triton_models.categoriser.contract import IMAGE_DIM, ImageEmbeddings
from triton_models.triton_client import TritonClient

MAX_IMAGES_PER_REQUEST = 64  # the image_encoder model's max_batch_size
__all__ = [
    "IMAGE_DIM",
    "MAX_IMAGES_PER_REQUEST",
    "FetchedImages",
    "ImageEmbedder",
    "ImageEmbeddings",
]
log = get_logger(__name__)


@dataclass(frozen=True)
class FetchedImages:
    """A batch's first images as fetched: bytes per product (None: none to encode)."""

    data: list[bytes | None]
    failed: list[bool]  # had an image URL, but nothing usable came back


class ImageEmbedder:
    """Fetches and encodes images for a batch; owns the fetcher's connection pool."""

    def __init__(self, settings: Settings, triton: TritonClient, fetcher: ImageFetcher) -> None:
        self.model = settings.image_encoder_model
        self.triton = triton
        self.fetcher = fetcher

    async def embed(self, products: list[NormalisedProduct]) -> ImageEmbeddings:
        return await self.encode(await self.fetch(products), products)

    async def fetch(self, products: list[NormalisedProduct]) -> FetchedImages:
        """Each product's first image (``product_pipeline`` encodes them on the server)."""
        n = len(products)
        data: list[bytes | None] = [None] * n
        failed = [False] * n
        wanted = [i for i, p in enumerate(products) if p.image_urls]
        if not wanted:
            return FetchedImages(data, failed)
        results = await self.fetcher.fetch_many(products[i].image_urls[0] for i in wanted)
        for i, result in zip(wanted, results, strict=True):
            if isinstance(result, FetchedImage):
                data[i] = result.data
                continue
            failed[i] = True
            log.info(
                "image_unavailable",
                product_id=products[i].product_id,
                url=result.url,
                reason=getattr(result, "reason", ""),
            )
        return FetchedImages(data, failed)

    async def encode(
        self, fetched: FetchedImages, products: list[NormalisedProduct]
    ) -> ImageEmbeddings:
        """Embeddings of the fetched images, through the image encoder model."""
        n = len(fetched.data)
        vectors = np.zeros((n, IMAGE_DIM), dtype=np.float32)
        mask = np.zeros((n, 1), dtype=np.float32)
        failed = list(fetched.failed)
        present = [(i, data) for i, data in enumerate(fetched.data) if data is not None]
        for start in range(0, len(present), MAX_IMAGES_PER_REQUEST):
            chunk = present[start : start + MAX_IMAGES_PER_REQUEST]
            images = np.array([[data] for _, data in chunk], dtype=np.object_)
            outputs = await self.triton.infer(self.model, {"IMAGE": images}, ["EMBEDDING", "OK"])
            for row, (index, _) in enumerate(chunk):
                if bool(outputs["OK"][row][0]):
                    vectors[index] = outputs["EMBEDDING"][row]
                    mask[index, 0] = 1.0
                else:
                    failed[index] = True
                    log.info("image_undecodable", product_id=products[index].product_id)
        return ImageEmbeddings(vectors, mask, failed)
