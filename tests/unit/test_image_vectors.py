"""Each distinct image is encoded once, and an image encoded recently is not sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from catstream.settings import Settings
from schemas.events import NormalisedProduct
from streams.image_embedding import FetchedImages, ImageEmbedder, ImageEmbeddings
from streams.image_vectors import ImageVectorCache, image_digest
from triton_models.triton_client import InferAnswer


class EncoderTriton:
    """Answers ``image_encoder``: a vector made from the bytes; b"junk" does not decode."""

    def __init__(self, version: str = "1") -> None:
        self.version = version
        self.sent: list[list[bytes]] = []  # the images of every request

    async def infer(self, model: str, inputs: Any, outputs: Any, *_: Any) -> InferAnswer:
        images = [row[0] for row in inputs["IMAGE"]]
        self.sent.append(images)
        vectors = np.array([np.full(1280, len(data) + 10 * int(self.version)) for data in images])
        ok = np.array([[data != b"junk"] for data in images])
        answer = InferAnswer({"EMBEDDING": vectors.astype(np.float32), "OK": ok})
        answer.model_version = self.version
        return answer


def _embedder(triton: EncoderTriton, entries: int = 16) -> ImageEmbedder:
    fetcher: Any = None  # encode() never fetches
    return ImageEmbedder(Settings(image_vector_cache_entries=entries), triton, fetcher)  # type: ignore[arg-type]


def _encode(embedder: ImageEmbedder, *images: bytes | None) -> ImageEmbeddings:
    products = [NormalisedProduct(product_id=f"p{i}") for i in range(len(images))]
    fetched = FetchedImages(list(images), [False] * len(images))
    return asyncio.run(embedder.encode(fetched, products))


def test_a_batch_sends_each_distinct_image_once() -> None:
    triton = EncoderTriton()
    out = _encode(_embedder(triton), b"aa", None, b"aa", b"bbb", b"junk")
    assert triton.sent == [[b"aa", b"bbb", b"junk"]]
    assert out.vectors[0][0] == out.vectors[2][0] == 12.0  # variants sharing a photo
    assert out.vectors[3][0] == 13.0
    assert out.mask.reshape(-1).tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert out.failed == [False, False, False, False, True]


def test_an_image_encoded_recently_is_not_sent_again() -> None:
    triton = EncoderTriton()
    embedder = _embedder(triton)
    first = _encode(embedder, b"aa", b"junk")
    again = _encode(embedder, b"aa", b"junk", b"cccc")  # e.g. the product was retitled
    assert triton.sent == [[b"aa", b"junk"], [b"cccc"]]
    assert np.array_equal(again.vectors[0], first.vectors[0])
    assert again.failed == [False, True, False]  # undecodable bytes stay undecodable


def test_an_answer_from_a_new_encoder_version_forgets_the_old_vectors() -> None:
    triton = EncoderTriton(version="1")
    embedder = _embedder(triton)
    _encode(embedder, b"aa")
    triton.version = "2"  # a new image encoder was loaded
    _encode(embedder, b"bbb")
    out = _encode(embedder, b"aa")
    assert triton.sent == [[b"aa"], [b"bbb"], [b"aa"]]
    assert out.vectors[0][0] == 22.0  # version 2's vector, never version 1's


def test_the_cache_keeps_the_most_recently_used_entries() -> None:
    cache = ImageVectorCache(entries=2)
    a, b, c = (image_digest(data) for data in (b"a", b"b", b"c"))
    vector = np.ones(4, dtype=np.float32)
    cache.put(a, vector, "1")
    cache.put(b, vector, "1")
    assert cache.get(a)[0]  # a is now the most recent
    cache.put(c, None, "1")
    assert [cache.get(d)[0] for d in (a, b, c)] == [True, False, True]
    assert len(cache) == 2


def test_no_entries_keeps_nothing() -> None:
    triton = EncoderTriton()
    embedder = _embedder(triton, entries=0)
    _encode(embedder, b"aa")
    _encode(embedder, b"aa")
    assert triton.sent == [[b"aa"], [b"aa"]]
