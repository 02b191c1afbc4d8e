"""The fingerprint: its canonical JSON (orjson's fast path writes json.dumps' bytes exactly)
and its field list."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normaliser.fingerprint import canonical_json, fingerprint
from schemas.events import NormalisedProduct


def _reference(payload: Any) -> bytes:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(alphabet=st.characters(codec=None)),  # control characters and lone surrogates too
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=12), values, max_size=6))
def test_it_writes_the_bytes_json_dumps_writes(payload: dict[str, Any]) -> None:
    assert canonical_json(payload) == _reference(payload)


def test_the_awkward_characters_are_escaped_alike() -> None:
    text = "".join(chr(i) for i in range(0x80)) + "\u2028\u2029é€😀\x7f\u0085"
    payload = {"title": text, "image_urls": [text, "b"], "brand": None, "n": 2**63}
    assert canonical_json(payload) == _reference(payload)
    assert canonical_json({"title": "\ud800"}) == _reference({"title": "\ud800"})
    assert canonical_json({"price": 1e16}) == _reference({"price": 1e16})


def test_field_order_and_repeats_do_not_matter_and_unknown_fields_are_refused() -> None:
    product = NormalisedProduct(product_id="p1", title="Red kite", brand="Acme")
    assert fingerprint(product, ["title", "brand"]) == fingerprint(
        product, ["brand", "title", "title"]
    )
    assert fingerprint(product, ["title"]) != fingerprint(product, ["title", "brand"])
    with pytest.raises(ValueError, match="CATSTREAM_CATEGORISATION_FIELDS"):
        fingerprint(product, ["title", "colour_code"])
