"""The content fingerprint used for change detection.

``fingerprint(product, fields)`` is the sha256 (hex) of a canonical JSON object
holding the named *normalised* fields: keys sorted, no whitespace, UTF-8. The
field list is a set (its order does not matter); values keep their order, so a
re-ordered image list is a change. ``raw_category`` stands for the normalised
``category_path``, so ``HOME > Garden`` and ``home/garden`` fingerprint alike.
A price-only update leaves it unchanged because price is not a categorisation
field. Pure: no I/O.
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
