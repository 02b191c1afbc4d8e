"""Decoding products.raw messages: valid ones pass, every invalid one says why and what to do."""

from __future__ import annotations

import json

import pytest

from catstream.errors import InvalidMessage
from streams.raw_decoding import decode_raw_product


def test_valid_product_keeps_unknown_fields_in_extra() -> None:
    value = json.dumps({"product_id": "a1", "title": "Hat", "availability": "in stock"}).encode()
    product = decode_raw_product(b"a1", value, 10_000)
    assert product.product_id == "a1"
    assert product.extra == {"availability": "in stock"}


@pytest.mark.parametrize(
    ("key", "value", "error_class", "says"),
    [
        (b"a", b"{not json", "InvalidJson", "not valid JSON"),
        (b"a", b"\xff\xfe", "InvalidUtf8", "UTF-8"),
        (b"a", b"[1, 2]", "InvalidJson", "not an object"),
        (None, b'{"title": "x"}', "InvalidProductId", "product_id is missing"),
        (None, json.dumps({"product_id": "x" * 300}).encode(), "InvalidProductId", "longer"),
        (b"a", b'{"product_id": "a", "title": ["x"]}', "SchemaViolation", "title"),
        (b"a", b'{"product_id": "a", "updated_at": "yesterday"}', "SchemaViolation", "RFC 3339"),
        (b"other", b'{"product_id": "a"}', "KeyMismatch", "key products.raw messages"),
        (b"a", b'{"product_id": "a", "d": "' + b"x" * 500 + b'"}', "MessageTooLarge", "limit"),
    ],
)
def test_invalid_messages_name_the_problem(
    key: bytes | None, value: bytes, error_class: str, says: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_raw_product(key, value, 400)
    assert caught.value.error_class == error_class
    assert says in caught.value.reason
