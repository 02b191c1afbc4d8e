"""The matcher's Triton contract: a product and its candidates as JSON records, scores back.

``QUERY`` (BYTES [1]) is one ``MatchRecord`` as JSON, ``CANDIDATES`` (BYTES [n]) its
n candidates, ``SCORES`` (FP32 [n]) P(same product) for each, as ``PairModel.score_pairs``
computes it in process (the served ``model.py`` runs that same code on the same version
files). Floats travel as JSON numbers, which round-trip exactly, so scores are equal.
"""

from __future__ import annotations

import json
from typing import Any

from triton_models.matcher.features import MatchRecord

MODEL_NAME = "matcher"
QUERY = "QUERY"
CANDIDATES = "CANDIDATES"
SCORES = "SCORES"


def encode_record(record: MatchRecord) -> bytes:
    data: dict[str, Any] = {
        "product_id": record.product_id,
        "title": record.title,
        "brand": record.brand,
        "model_number": record.model_number,
        "codes": sorted(record.codes),
        "price": record.price,
        "currency": record.currency,
        "merchant": record.merchant,
        "category": record.category,
        "size": record.size,
        "colour": record.colour,
        "text_vector": list(record.text_vector) if record.text_vector is not None else None,
        "image_vector": list(record.image_vector) if record.image_vector is not None else None,
    }
    return json.dumps(data, separators=(",", ":"), allow_nan=True).encode("utf-8")


def decode_record(raw: bytes | str) -> MatchRecord:
    """A record from its JSON; ``ValueError`` with the reason when it is not one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"a matcher record is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("product_id"), str):
        raise ValueError("a matcher record must be a JSON object with a product_id")
    text, image = data.get("text_vector"), data.get("image_vector")
    return MatchRecord(
        product_id=data["product_id"],
        title=str(data.get("title") or ""),
        brand=data.get("brand"),
        model_number=data.get("model_number"),
        codes=frozenset(str(c) for c in data.get("codes") or ()),
        price=None if data.get("price") is None else float(data["price"]),
        currency=data.get("currency"),
        merchant=data.get("merchant"),
        category=str(data.get("category") or ""),
        size=data.get("size"),
        colour=data.get("colour"),
        text_vector=tuple(float(x) for x in text) if text is not None else None,
        image_vector=tuple(float(x) for x in image) if image is not None else None,
    )
