"""Image embeddings for a micro-batch: fetch the first image of each product, encode on Triton.

A product whose image cannot be fetched or decoded is still categorised from
text; it is flagged ``image_failed`` and gets a zero embedding with mask 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from catstream.logs import get_logger
from catstream.settings import Settings
from schemas.events import NormalisedProduct
from streams.images import FetchedImage, ImageFetcher
from triton_models.categoriser.contract import IMAGE_DIM, ImageEmbeddings
from triton_models.triton_client import TritonClient

MAX_IMAGES_PER_REQUEST = 64  # the image_encoder model's max_batch_size
__all__ = ["IMAGE_DIM", "MAX_IMAGES_PER_REQUEST", "ImageEmbedder", "ImageEmbeddings"]
log = get_logger(__name__)


class ImageEmbedder:
    """Fetches and encodes images for a batch; owns the fetcher's connection pool."""

    def __init__(self, settings: Settings, triton: TritonClient, fetcher: ImageFetcher) -> None:
        self.model = settings.image_encoder_model
        self.triton = triton
        self.fetcher = fetcher

    async def embed(self, products: list[NormalisedProduct]) -> ImageEmbeddings:
        n = len(products)
        vectors = np.zeros((n, IMAGE_DIM), dtype=np.float32)
        mask = np.zeros((n, 1), dtype=np.float32)
        wanted = [i for i, p in enumerate(products) if p.image_urls]
        failed = [False] * n
        if not wanted:
            return ImageEmbeddings(vectors, mask, failed)
        results = await self.fetcher.fetch_many(products[i].image_urls[0] for i in wanted)
        fetched = [
            (i, r) for i, r in zip(wanted, results, strict=True) if isinstance(r, FetchedImage)
        ]
        for i, result in zip(wanted, results, strict=True):
            if not result.ok:
                failed[i] = True
                log.info(
                    "image_unavailable",
                    product_id=products[i].product_id,
                    url=result.url,
                    reason=getattr(result, "reason", ""),
                )
        if fetched:
            await self._encode(fetched, vectors, mask, failed, products)
        return ImageEmbeddings(vectors, mask, failed)

    async def _encode(
        self,
        fetched: list[tuple[int, FetchedImage]],
        vectors: npt.NDArray[np.float32],
        mask: npt.NDArray[np.float32],
        failed: list[bool],
        products: list[NormalisedProduct],
    ) -> None:
        for start in range(0, len(fetched), MAX_IMAGES_PER_REQUEST):
            chunk = fetched[start : start + MAX_IMAGES_PER_REQUEST]
            images = np.array([[image.data] for _, image in chunk], dtype=np.object_)
            outputs = await self.triton.infer(self.model, {"IMAGE": images}, ["EMBEDDING", "OK"])
            for row, (index, _) in enumerate(chunk):
                if bool(outputs["OK"][row][0]):
                    vectors[index] = outputs["EMBEDDING"][row]
                    mask[index, 0] = 1.0
                else:
                    failed[index] = True
                    log.info("image_undecodable", product_id=products[index].product_id)
