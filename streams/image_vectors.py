"""Recently encoded images' vectors, by the image's content, for one encoder version.

A changed product usually keeps its image (a retitled or re-described product), and
the variants of one product (sizes, colours) often share a photo. Encoding the same
bytes again gives the same vector, so the image encoder runs only for bytes it has not
seen recently.

Keyed by a digest of the bytes, never by URL: a CDN may serve new bytes at an old
URL, and then the digest differs. Each vector belongs to the image encoder
version that produced it. When an answer comes from another version (a new one
was loaded), the cache is emptied, so vectors of two versions are never mixed
after that answer. Until the first miss after a model change, hits still give the
previous version's vectors: at most ``entries`` products, and only until a new
image arrives.

Undecodable images are remembered too (``None``): the same bytes fail the same way.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from catstream.metrics import IMAGE_VECTOR_CACHE

Vector = npt.NDArray[np.float32]


def image_digest(data: bytes) -> bytes:
    """A 128-bit digest of an image's bytes (collisions are not a practical concern)."""
    return hashlib.blake2b(data, digest_size=16).digest()


class ImageVectorCache:
    """An LRU of at most ``entries`` image vectors (0: nothing is kept)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.version = ""  # the image encoder version every entry came from
        self._vectors: OrderedDict[bytes, Vector | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, digest: bytes) -> tuple[bool, Vector | None]:
        """(found, vector); a found ``None`` is an image the encoder could not decode."""
        if digest not in self._vectors:
            IMAGE_VECTOR_CACHE.labels(outcome="miss").inc()
            return False, None
        self._vectors.move_to_end(digest)
        IMAGE_VECTOR_CACHE.labels(outcome="hit").inc()
        return True, self._vectors[digest]

    def put(self, digest: bytes, vector: Vector | None, version: str) -> None:
        """Remember an encoder answer; one from a new version empties the cache first."""
        if version != self.version:
            self._vectors.clear()
            self.version = version
        if self.entries <= 0:
            return
        # A copy: the caller's batch array must not pin the whole batch in memory.
        self._vectors[digest] = None if vector is None else np.array(vector, dtype=np.float32)
        self._vectors.move_to_end(digest)
        while len(self._vectors) > self.entries:
            self._vectors.popitem(last=False)
