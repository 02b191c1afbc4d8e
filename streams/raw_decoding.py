"""Decode one ``products.raw`` message into a ``RawProduct``, or say why not.

Pure: bytes in, a model or an ``InvalidMessage`` out. Every reason names the
problem and what the producer should do, because it ends up in front of a
person reading ``catstream topics tail products.deadletter``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from catstream.errors import InvalidMessage
from schemas.events import PRODUCT_ID_MAX, RawProduct

# Deeper than any feed needs; far below the interpreter's recursion limit, so neither
# the JSON parser nor pydantic nor the encoders of later stages can hit it.
MAX_NESTING = 32
# A number with more digits is not a price, a weight or an id; Python refuses to turn
# more than 4,300 digits into an int at all (``sys.set_int_max_str_digits``).
MAX_INT_DIGITS = 100
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


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
        payload = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(
            f"message is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "publish one JSON object per product",
            error_class="InvalidJson",
        ) from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    if not isinstance(payload, dict):
        raise InvalidMessage(
            f"message is a JSON {type(payload).__name__}, not an object; "
            "publish one JSON object per product",
            error_class="InvalidJson",
        )
    # Lone surrogates only enter through \u escapes (the bytes are valid UTF-8).
    return _checked_tree(payload, repair_text="\\u" in text)


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise InvalidMessage(
            f"message contains a number with {len(digits):,} digits (at most "
            f'{MAX_INT_DIGITS} are accepted); send prices and ids as text, e.g. "12.50"',
            error_class="NumberTooLarge",
        )
    return int(digits)


def _no_constant(name: str) -> Any:
    raise InvalidMessage(
        f"message contains {name}, which is not JSON; send null for a missing number",
        error_class="InvalidJson",
    )


def _too_deep() -> InvalidMessage:
    return InvalidMessage(
        f"message is nested more than {MAX_NESTING} levels deep; send flat product fields "
        "(nested objects in extra at most a few levels)",
        error_class="TooDeeplyNested",
    )


def _checked_tree(payload: dict[str, Any], *, repair_text: bool) -> dict[str, Any]:
    """``payload`` with its depth checked and, when asked, lone surrogates repaired.

    A lone UTF-16 surrogate (``"\\ud800"``) decodes to a ``str`` that no UTF-8 encoder
    accepts, so every later stage would fail to publish it. Text fields get U+FFFD in
    its place; a ``product_id`` with one is refused (an id must not change silently).
    """
    product_id = payload.get("product_id")
    if repair_text and isinstance(product_id, str) and _LONE_SURROGATE.search(product_id):
        raise InvalidMessage(
            "product_id contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff "
            "escape), so it is not valid Unicode; fix the id in the feed",
            error_class="InvalidProductId",
        )
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _too_deep()
        if isinstance(node, dict):
            if repair_text and any(_LONE_SURROGATE.search(k) for k in node):
                repaired = {_repaired(k): v for k, v in node.items()}
                node.clear()
                node.update(repaired)
            for name, child in node.items():
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1))
                elif repair_text and isinstance(child, str):
                    node[name] = _repaired(child)
        elif isinstance(node, list):
            for index, child in enumerate(node):
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1))
                elif repair_text and isinstance(child, str):
                    node[index] = _repaired(child)
    return payload


def _repaired(text: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", text)


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
    # The fingerprint table is partitioned by key; a missing or mismatched key would put
    # the product's state on another partition and break change detection.
    if key is None:
        raise InvalidMessage(
            f"message has no key (product_id {product_id[:60]!r}); key products.raw messages "
            "by product_id so every update of a product lands on the same partition",
            error_class="KeyMismatch",
        )
    if key.decode("utf-8", "replace") != product_id:
        raise InvalidMessage(
            f"message key {key[:60]!r} differs from product_id {product_id[:60]!r}; "
            "key products.raw messages by product_id",
            error_class="KeyMismatch",
        )
