"""Image embeddings for a micro-batch: fetch the first image of each product, encode on Triton.

Encoded by the ``image_encoder`` model (``encode``), or fetched only (``fetch``) when
``product_pipeline`` encodes them on the server in the categoriser's request. Only
``encode`` skips images it encoded recently (``streams.image_vectors``): the pipeline
gets every image's bytes, since its categoriser step reads the vectors it encodes.

A product whose image cannot be fetched or decoded is still categorised from
text; it is flagged ``image_failed`` and gets a zero embedding with mask 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catstream.logs import get_logger
from catstream.settings import Settings
from schemas.events import NormalisedProduct
from streams.image_vectors import ImageVectorCache, Vector, image_digest
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
        self.cache = ImageVectorCache(settings.image_vector_cache_entries)

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
        """Embeddings of the fetched images: each distinct image is encoded once, and
        images encoded recently (``streams.image_vectors``) not again."""
        n = len(fetched.data)
        vectors = np.zeros((n, IMAGE_DIM), dtype=np.float32)
        mask = np.zeros((n, 1), dtype=np.float32)
        failed = list(fetched.failed)
        rows: dict[bytes, list[int]] = {}  # digest → the products showing that image
        known: dict[bytes, Vector | None] = {}
        unseen: dict[bytes, bytes] = {}  # digest → bytes to encode
        for index, data in enumerate(fetched.data):
            if data is None:
                continue
            digest = image_digest(data)
            rows.setdefault(digest, []).append(index)
            if digest in known or digest in unseen:
                continue
            found, vector = self.cache.get(digest)
            if found:
                known[digest] = vector
            else:
                unseen[digest] = data
        known.update(await self._encode_unseen(unseen))
        for digest, indices in rows.items():
            vector = known[digest]
            for index in indices:
                if vector is None:
                    failed[index] = True
                    log.info("image_undecodable", product_id=products[index].product_id)
                else:
                    vectors[index] = vector
                    mask[index, 0] = 1.0
        return ImageEmbeddings(vectors, mask, failed)

    async def _encode_unseen(self, unseen: dict[bytes, bytes]) -> dict[bytes, Vector | None]:
        """The image encoder's vector (None: undecodable) of each image, by digest."""
        answers: dict[bytes, Vector | None] = {}
        items = list(unseen.items())
        for start in range(0, len(items), MAX_IMAGES_PER_REQUEST):
            chunk = items[start : start + MAX_IMAGES_PER_REQUEST]
            images = np.array([[data] for _, data in chunk], dtype=np.object_)
            outputs = await self.triton.infer(self.model, {"IMAGE": images}, ["EMBEDDING", "OK"])
            for row, (digest, _) in enumerate(chunk):
                vector = outputs["EMBEDDING"][row] if bool(outputs["OK"][row][0]) else None
                answers[digest] = vector
                self.cache.put(digest, vector, outputs.model_version)
        return answers
