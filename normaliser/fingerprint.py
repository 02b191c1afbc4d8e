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
from typing import Any

from schemas.events import NormalisedProduct

_FIELD_ALIASES = {"raw_category": "category_path"}


def _field_value(product: NormalisedProduct, name: str) -> Any:
    attribute = _FIELD_ALIASES.get(name, name)
    if attribute not in NormalisedProduct.model_fields or attribute in ("fingerprint", "changed"):
        known = ", ".join(sorted(set(NormalisedProduct.model_fields) - {"fingerprint", "changed"}))
        raise ValueError(
            f"cannot fingerprint unknown field {name!r}; "
            f"set CATSTREAM_CATEGORISATION_FIELDS to names from: {known}"
        )
    value = getattr(product, attribute)
    if isinstance(value, list):
        value = list(dict.fromkeys(value)) if all(isinstance(v, str) for v in value) else value
    return value


def fingerprint(product: NormalisedProduct, fields: Sequence[str]) -> str:
    """sha256 hex of the canonical JSON of ``fields`` (normalised values) of ``product``."""
    payload = {name: _field_value(product, name) for name in sorted(set(fields))}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


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
