"""Decode one ``products.raw`` message into a ``RawProduct``, or say why not.

Pure: bytes in, a model or an ``InvalidMessage`` out. Every reason names the
problem and what the producer should do, because it ends up in front of a
person reading ``catstream topics tail products.deadletter``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from catstream.errors import InvalidMessage
from schemas.events import PRODUCT_ID_MAX, RawProduct


def decode_raw_product(key: bytes | None, value: bytes, max_bytes: int) -> RawProduct:
    """The validated product in ``value``; raises ``InvalidMessage`` with a reason."""
    if len(value) > max_bytes:
        raise InvalidMessage(
            f"message is {len(value):,} bytes, over the {max_bytes:,}-byte limit; "
            "trim descriptions/extra fields in the feed or raise CATSTREAM_MAX_MESSAGE_BYTES",
            error_class="MessageTooLarge",
        )
    payload = _parse_json(value)
    product = _validate(payload)
    _check_key(key, product.product_id)
    return product


def _parse_json(value: bytes) -> dict[str, Any]:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            f"message is not valid UTF-8 (byte {exc.start}); re-encode the feed as UTF-8 "
            "(catstream feed publish does this for CSV/TSV/XML)",
            error_class="InvalidUtf8",
        ) from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            f"message is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "publish one JSON object per product",
            error_class="InvalidJson",
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidMessage(
            f"message is a JSON {type(payload).__name__}, not an object; "
            "publish one JSON object per product",
            error_class="InvalidJson",
        )
    return payload


def _validate(payload: dict[str, Any]) -> RawProduct:
    try:
        return RawProduct.model_validate(payload)
    except ValidationError as exc:
        raise InvalidMessage(_describe(exc), error_class=_error_class(exc)) from exc


def _error_class(exc: ValidationError) -> str:
    locations = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
    if "product_id" in locations:
        return "InvalidProductId"
    return "SchemaViolation"


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        field = ".".join(str(part) for part in err["loc"]) or "(message)"
        if field == "product_id" and err["type"] == "missing":
            problems.append("product_id is missing; every product needs a stable id")
        elif field == "product_id" and err["type"] == "string_too_long":
            problems.append(f"product_id is longer than {PRODUCT_ID_MAX} characters; shorten it")
        else:
            problems.append(f"{field}: {err['msg']} (got {_preview(err.get('input'))})")
    return "; ".join(problems) + ". Fix the feed mapping or the producer, then replay."


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_key(key: bytes | None, product_id: str) -> None:
    # The fingerprint table is partitioned by key; a mismatched key would put the
    # product's state on another partition and break change detection.
    if key is not None and key.decode("utf-8", "replace") != product_id:
        raise InvalidMessage(
            f"message key {key[:60]!r} differs from product_id {product_id[:60]!r}; "
            "key products.raw messages by product_id",
            error_class="KeyMismatch",
        )
