"""Vectors on the wire: base64 of little-endian IEEE-754 float32.

A 384 + 1,280 float embedding as JSON numbers was ~30 KB per product, 90% of the
bytes on the broker, and larger than a producer batch. Packed it is 8.9 KB (4
bytes per value, 4/3 for base64) and decodes in one call in any language::

    Python   numpy.frombuffer(base64.b64decode(text), dtype="<f4")
             struct.unpack(f"<{len(raw) // 4}f", raw)
    Java     ByteBuffer.wrap(Base64.getDecoder().decode(text))
                       .order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()

Readers also accept a JSON array of numbers (what schema version 1 producers
wrote before issue 10), so a rolling upgrade needs no stop.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BeforeValidator, WithJsonSchema

DTYPE = "<f4"  # little-endian float32, whatever the host's byte order
ENCODING_DOC = (
    "base64 (RFC 4648 standard alphabet, padded) of the vector's values as little-endian "
    "IEEE-754 float32, 4 bytes each, in order: decoded length / 4 = dimensions. Readers also "
    "accept a JSON array of numbers (the form written before issue 10)."
)


def encode_vector(values: Sequence[float] | NDArray[Any]) -> str:
    """``values`` as base64 of little-endian float32."""
    return base64.b64encode(np.asarray(values, dtype=DTYPE).tobytes()).decode("ascii")


def decode_vector(text: str) -> NDArray[np.float32]:
    """The float32 values of an encoded vector (a read-only view of the decoded bytes)."""
    return np.frombuffer(base64.b64decode(text), dtype=DTYPE)


def _as_encoded(value: Any) -> Any:
    """What a ``Vector`` field accepts: encoded text (checked), or numbers to encode."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not base64 ({exc}); {ENCODING_DOC}") from exc
        if len(raw) % 4:
            raise ValueError(f"{len(raw)} bytes is not a whole number of float32; {ENCODING_DOC}")
        return value
    if isinstance(value, np.ndarray | list | tuple):
        try:
            return encode_vector(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a vector of numbers ({exc})") from exc
    return value  # str validation rejects it with pydantic's own message


Vector = Annotated[
    str,
    BeforeValidator(_as_encoded),
    WithJsonSchema({"type": "string", "contentEncoding": "base64", "description": ENCODING_DOC}),
]
