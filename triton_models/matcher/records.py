"""Building ``MatchRecord``s from what feeds and pair files carry.

One function for both, so training pairs and streamed products give the
matcher the same fields: the model number comes from ``model_number``,
``modelno``, ``model`` or ``mpn`` (first present); product codes from
``gtin``, ``gtin13``, ``ean``, ``upc``, ``isbn`` and ``mpn``, at the top level or
in a feed's ``extra`` (where the normaliser keeps columns it does not know).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from triton_models.matcher.features import MatchRecord, normalise_code

MODEL_NUMBER_KEYS = ("model_number", "modelno", "model", "mpn")
CODE_KEYS = ("gtin", "gtin8", "gtin12", "gtin13", "gtin14", "ean", "upc", "isbn", "mpn")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _price(value: Any) -> float | None:
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) and price > 0 else None


def _lookup(fields: Mapping[str, Any], keys: Sequence[str]) -> list[Any]:
    extra = fields.get("extra") or {}
    found = []
    for key in keys:
        for source in (fields, extra):
            if isinstance(source, Mapping) and source.get(key) not in (None, ""):
                found.append(source[key])
    return found


def record_from_fields(
    fields: Mapping[str, Any],
    *,
    product_id: str | None = None,
    text_vector: Sequence[float] | None = None,
    image_vector: Sequence[float] | None = None,
) -> MatchRecord:
    """A record from a product's fields (a pair file's record, or a normalised product's)."""
    models = _lookup(fields, MODEL_NUMBER_KEYS)
    codes = {c for c in (normalise_code(v) for v in _lookup(fields, CODE_KEYS)) if c}
    category = fields.get("category") or fields.get("raw_category") or ""
    return MatchRecord(
        product_id=str(product_id or fields.get("product_id") or fields.get("id") or ""),
        title=_text(fields.get("title")) or "",
        brand=_text(fields.get("brand")),
        model_number=_text(models[0]) if models else None,
        codes=frozenset(codes),
        price=_price(fields.get("price")),
        currency=_text(fields.get("currency")),
        merchant=_text(fields.get("merchant")),
        category=str(category),
        size=_text(fields.get("size")),
        colour=_text(fields.get("colour") or fields.get("color")),
        text_vector=tuple(float(x) for x in text_vector) if text_vector is not None else None,
        image_vector=tuple(float(x) for x in image_vector) if image_vector is not None else None,
    )


def embedding_sentence(record: MatchRecord) -> str:
    """The text the stream's text_encoder embeds for a product: title | brand | category."""
    parts = [p.strip() for p in (record.title, record.brand or "", record.category)]
    return " | ".join(p for p in parts if p)
