"""The content fingerprint used for change detection.

``fingerprint(product, fields)`` is the sha256 (hex) of a canonical JSON object
holding the named *normalised* fields: keys sorted, no whitespace, UTF-8. The
field list is a set (its order does not matter); values keep their order, so a
re-ordered image list is a change. ``raw_category`` stands for the normalised
``category_path``, so ``HOME > Garden`` and ``home/garden`` fingerprint alike.
A price-only update leaves it unchanged because price is not a categorisation
field. ``record_digest(product)`` covers the whole record instead (identical
re-deliveries, see ``streams.change_detection``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson

from schemas.events import NormalisedProduct

_FIELD_ALIASES = {"raw_category": "category_path"}


@lru_cache(maxsize=16)
def _attributes(fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(name, attribute) per field, sorted and checked once per field list (a class's
    ``model_fields`` lookup per field was most of a fingerprint's cost)."""
    known = set(NormalisedProduct.model_fields) - {"fingerprint", "changed"}
    pairs = []
    for name in sorted(set(fields)):
        attribute = _FIELD_ALIASES.get(name, name)
        if attribute not in known:
            raise ValueError(
                f"cannot fingerprint unknown field {name!r}; "
                f"set CATSTREAM_CATEGORISATION_FIELDS to names from: {', '.join(sorted(known))}"
            )
        pairs.append((name, attribute))
    return tuple(pairs)


def _field_value(product: NormalisedProduct, attribute: str) -> Any:
    value = getattr(product, attribute)
    if isinstance(value, list):
        value = list(dict.fromkeys(value)) if all(isinstance(v, str) for v in value) else value
    return value


def fingerprint(product: NormalisedProduct, fields: Sequence[str]) -> str:
    """sha256 hex of the canonical JSON of ``fields`` (normalised values) of ``product``."""
    payload = {name: _field_value(product, attr) for name, attr in _attributes(tuple(fields))}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def canonical_json(payload: Any) -> bytes:
    """``json.dumps(sort_keys, no whitespace, ensure_ascii=False)`` as UTF-8, byte for byte.

    orjson writes the same bytes for strings, integers, lists, None and str-keyed
    dicts at a third of the cost (every event is fingerprinted); floats (formatted
    differently), lone surrogates and integers beyond 64 bits take the json path.
    Fingerprints are stored in the state table, so the bytes must never change.
    """
    if not _has_float(payload):
        try:
            return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_float(v) for v in value)
    return False


# Per-delivery metadata: what two deliveries of the same record may differ in without
# anything downstream changing. ``updated_at`` (also as received, in ``raw``) orders a
# product's versions; ``changed`` is the normalise agent's verdict on this delivery (it
# only tells the infer agent whether to carry a prediction forward). Everything else a
# NormalisedProduct holds is published to products.normalised and reaches the
# Elasticsearch document, the infer and match agents or a review item, so it is digested.
DELIVERY_FIELDS = frozenset({"updated_at", "changed"})
RAW_DELIVERY_FIELDS = frozenset({"updated_at"})


def record_digest(product: NormalisedProduct) -> str:
    """blake2b-128 (hex) of the whole normalised record but ``DELIVERY_FIELDS``.

    Canonical JSON (keys sorted at every level, ASCII escapes, so key order in a
    feed's ``extra`` or ``raw`` and lone surrogates do not matter); list order
    does. ``fingerprint`` is included, so changing the categorisation fields
    changes every digest. 16 bytes: the table holds one per product, and a
    collision (2^-64 at 2^32 products) would only skip one product's refresh.
    """
    record = product.model_dump(mode="json", exclude=set(DELIVERY_FIELDS))
    raw = record.get("raw") or {}
    record["raw"] = {k: v for k, v in raw.items() if k not in RAW_DELIVERY_FIELDS}
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode("ascii"), digest_size=16).hexdigest()
