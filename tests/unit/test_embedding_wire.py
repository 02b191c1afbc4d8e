"""``products.embeddings`` on the wire: vectors as base64 of little-endian float32.

Decoded here with the standard library only (json, base64, struct), the way a
consumer in any language would, from what the published schema says.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.events import ProductEmbedding
from schemas.vectors import encode_vector

SCHEMA = Path(__file__).parents[2] / "schemas" / "json" / "products.embeddings.schema.json"


def _event(text: list[float], image: list[float] | None) -> ProductEmbedding:
    return ProductEmbedding(
        product_id="p1",
        model_version="1",
        text_embedding=encode_vector(text),
        image_embedding=encode_vector(image) if image is not None else None,
        fingerprint="f",
    )


def test_vectors_decode_with_base64_and_struct_alone() -> None:
    rng = random.Random(1)
    text = [rng.uniform(-1, 1) for _ in range(384)]
    image = [rng.uniform(0, 5) for _ in range(1280)]
    wire = _event(text, image).model_dump_json().encode()

    document = json.loads(wire)
    raw_text = base64.b64decode(document["text_embedding"], validate=True)
    raw_image = base64.b64decode(document["image_embedding"], validate=True)
    decoded_text = struct.unpack(f"<{len(raw_text) // 4}f", raw_text)
    decoded_image = struct.unpack(f"<{len(raw_image) // 4}f", raw_image)
    as_f32 = [struct.unpack("<f", struct.pack("<f", v))[0] for v in text]
    assert list(decoded_text) == as_f32
    assert len(decoded_image) == 1280
    assert max(abs(a - b) for a, b in zip(decoded_image, image, strict=True)) < 1e-6
    # 4 bytes a value, 4/3 for base64: a fifth of the old JSON numbers.
    assert len(wire) < (384 + 1280) * 4 * 4 / 3 + 500


def test_the_published_schema_documents_the_layout() -> None:
    schema = json.loads(SCHEMA.read_text())
    for name in ("text_embedding", "image_embedding"):
        field = schema["properties"][name]
        text = json.dumps(field)
        assert all(word in text for word in ("little-endian", "float32", "base64"))
    assert schema["properties"]["text_embedding"]["type"] == "string"


def test_arrays_of_numbers_are_still_read() -> None:
    """A producer of the old (array) form keeps working during a rolling upgrade."""
    legacy = {"product_id": "p1", "model_version": "1", "fingerprint": "f"}
    legacy["text_embedding"] = [0.5, -0.25]  # type: ignore[assignment]
    event = ProductEmbedding.model_validate_json(json.dumps(legacy))
    raw = base64.b64decode(event.text_embedding)
    assert struct.unpack("<2f", raw) == (0.5, -0.25)


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"abc").decode(), 12])
def test_what_is_not_a_vector_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        ProductEmbedding.model_validate(
            {"product_id": "p1", "model_version": "1", "fingerprint": "f", "text_embedding": bad}
        )
