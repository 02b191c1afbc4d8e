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


@pytest.mark.parametrize(
    ("value", "error_class", "says"),
    [
        (b"[" * 5000, "TooDeeplyNested", "nested more than"),  # was a RecursionError
        (b'{"product_id": "a", "extra": ' + b"[" * 40 + b"]" * 40 + b"}", "TooDeeplyNested", "32"),
        (b'{"product_id": "a", "price": ' + b"1" * 5000 + b"}", "NumberTooLarge", "as text"),
        (b'{"product_id": "a", "price": Infinity}', "InvalidJson", "Infinity"),
        (b'{"product_id": "a", "price": NaN}', "InvalidJson", "send null"),
        (b'{"product_id": "\\udc00"}', "InvalidProductId", "surrogate"),
    ],
)
def test_hostile_json_is_refused_with_a_reason(value: bytes, error_class: str, says: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_raw_product(b"a", value, 1_000_000)
    assert caught.value.error_class == error_class
    assert says in caught.value.reason


def test_lone_surrogates_in_text_become_replacement_characters() -> None:
    value = b'{"product_id": "a", "title": "x\\ud800", "extra": {"k\\udfff": ["\\ud800"]}}'
    product = decode_raw_product(b"a", value, 10_000)
    assert product.title == "x\ufffd"
    assert product.extra == {"k\ufffd": ["\ufffd"]}
    product.model_dump_json().encode("utf-8")  # encodable: the agent can publish it


def test_a_surrogate_pair_is_one_character_and_kept() -> None:
    value = b'{"product_id": "a", "title": "\\ud83d\\ude00"}'
    assert decode_raw_product(b"a", value, 10_000).title == "\U0001f600"


def test_a_product_without_a_key_is_refused() -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode_raw_product(None, b'{"product_id": "a"}', 10_000)
    assert caught.value.error_class == "KeyMismatch"
    assert "key products.raw messages by product_id" in caught.value.reason
