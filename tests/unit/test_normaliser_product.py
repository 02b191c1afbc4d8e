"""normalise_product and fingerprint: contract examples and hypothesis properties.

Idempotency, precisely: for any valid RawProduct ``r`` with ``n = normalise_product(r)``,
``m = normalise_product(as_raw(n))`` (the normalised shared fields fed back in) has
every field equal to ``n`` except ``raw`` (which records ``m``'s own input) and
``warnings`` (which must be empty: a normalised product has nothing left to fix).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normaliser import as_raw, fingerprint, normalise_product
from schemas.events import PRODUCT_ID_MAX, NormalisedProduct, RawProduct

FIELDS = ("title", "description", "brand", "raw_category", "gender", "image_urls")

_messy_pieces = st.sampled_from(
    [
        "<b>",
        "</b>",
        "<p>",
        "&amp;",
        "&amp;amp;",
        "&lt;i&gt;",
        "&#128293;",
        "&nbsp;",
        "🔥",
        "\u200b",
        "\x00",
        "\t",
        "\n",
        "  ",
        " > ",
        "/",
        " / ",
        "|",
        "»",
        ",",
        ";",
        "\\",
        "//",
        "€",
        "£",
        "$",
        "1.299,00",
        "1,299.00",
        "12",
        "EUR",
        "kr",
        "Ｗｉｄｅ",
        "İ",
        "ß",
        "ﬁ",
        "'",
        "T-Shirts/Tops",
        "Cars, Trucks & Vans",
        "&",
        "-",
        ".",
        "CD/DVD",
        "é",
        "e\u0301",
        "\ud800",
    ]
)
messy_text = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.lists(st.one_of(_messy_pieces, st.text(max_size=8)), max_size=12).map("".join),
)
price_values = st.one_of(
    messy_text,
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["£1,299.00", "1.299,00 EUR", "€ 12,50", "USD 1 299.00", "Free", "12.500"]),
)
url_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "https://cdn.x.com/a.jpg",
            "//cdn.x.com/b.jpg",
            "ftp://x/y",
            "http://[::1",
            " https://a.b/c.jpg | https://a.b/d.jpg ",
            "data:x",
        ]
    ),
)
raw_products = st.builds(
    RawProduct,
    product_id=st.text(min_size=1, max_size=PRODUCT_ID_MAX).filter(lambda s: bool(s.strip())),
    op=st.sampled_from(["upsert", "upsert", "delete"]),
    updated_at=st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=2**41),
        st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01T12:00:00+02:00"]),
    ),
    network=messy_text,
    merchant=messy_text,
    title=messy_text,
    description=messy_text,
    brand=messy_text,
    raw_category=messy_text,
    gender=messy_text,
    size=messy_text,
    colour=messy_text,
    price=price_values,
    currency=messy_text,
    image_urls=st.lists(url_values, max_size=5),
    url=st.one_of(st.none(), url_values),
    extra=st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _comparable(product: NormalisedProduct) -> dict[str, Any]:
    return product.model_dump(exclude={"raw", "warnings"})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_products, st.sampled_from([5000, 40, 3]))
def test_never_raises_keeps_id_and_is_idempotent(raw: RawProduct, max_chars: int) -> None:
    once = normalise_product(raw, max_chars=max_chars)
    assert once.product_id == raw.product_id
    assert once.op == raw.op
    again = normalise_product(as_raw(once), max_chars=max_chars)
    assert _comparable(once) == _comparable(again)
    assert again.warnings == []


@settings(max_examples=200, deadline=None)
@given(raw_products)
def test_fingerprint_is_stable_under_renormalising(raw: RawProduct) -> None:
    once = normalise_product(raw)
    again = normalise_product(as_raw(once))
    assert fingerprint(once, FIELDS) == fingerprint(again, FIELDS)


def _messy_raw(**overrides: Any) -> RawProduct:
    fields: dict[str, Any] = {
        "product_id": "awin-123",
        "updated_at": "2024-05-01T12:00:00Z",
        "network": "awin",
        "title": "  <b>NIKE</b> Air Max 90 &amp;amp; socks 🔥 ",
        "description": "<p>Soft&nbsp;leather.</p><ul><li>Red</li></ul>",
        "brand": "NIKE™",
        "raw_category": "APPAREL & ACCESSORIES/Shoes/Sneakers",
        "gender": "Damen",
        "size": "x-large",
        "colour": " Red ",
        "price": "£1,299.00",
        "image_urls": ["//cdn.x.com/a.jpg", "https://cdn.x.com/a.jpg", "ftp://x/y"],
        "url": "https://shop.example/p/123",
        "merchant_product_id": "SKU-9",
    }
    fields.update(overrides)
    return RawProduct.model_validate(fields)


def test_normalises_a_messy_product() -> None:
    product = normalise_product(_messy_raw())
    assert product.title == "NIKE Air Max 90 & socks"
    assert product.description == "Soft leather. Red"
    assert product.brand == "Nike"
    assert product.category_path == ["Apparel & Accessories", "Shoes", "Sneakers"]
    assert (product.gender, product.size, product.colour) == ("female", "XL", "Red")
    assert (product.price, product.currency) == ("1299.00", "GBP")
    assert product.image_urls == ["https://cdn.x.com/a.jpg"]
    assert product.updated_at == 1714564800000
    assert product.extra == {"merchant_product_id": "SKU-9"}
    assert product.raw["price"] == "£1,299.00"
    assert product.raw["gender"] == "Damen"
    assert product.warnings == ["image_urls_dropped: 1 not http(s)"]
    assert (product.fingerprint, product.changed) == ("", True)


def test_unparsable_price_is_null_with_a_warning() -> None:
    product = normalise_product(_messy_raw(price="call us", image_urls=[]))
    assert product.price is None
    assert product.warnings == ["price_unparsable: 'call us'"]


def test_price_locale_hint_from_extra() -> None:
    product = normalise_product(_messy_raw(price="1,299", currency="EUR"))
    assert product.price == "1.30"
    hinted = normalise_product(_messy_raw(price="1,299", currency="EUR", price_locale="en-IE"))
    assert hinted.price == "1299.00"


def test_delete_carries_only_id_op_and_time() -> None:
    product = normalise_product(_messy_raw(op="delete"))
    expected = NormalisedProduct(product_id="awin-123", op="delete", updated_at=1714564800000)
    assert expected == product


def test_fingerprint_ignores_price_and_field_order() -> None:
    base = normalise_product(_messy_raw())
    cheaper = normalise_product(_messy_raw(price="£999.00", updated_at="2024-06-01T00:00:00Z"))
    assert fingerprint(base, FIELDS) == fingerprint(cheaper, tuple(reversed(FIELDS)))


def test_fingerprint_sees_title_and_category_changes() -> None:
    base = fingerprint(normalise_product(_messy_raw()), FIELDS)
    retitled = normalise_product(_messy_raw(title="NIKE Air Max 95"))
    recategorised = normalise_product(_messy_raw(raw_category="Apparel > Shoes"))
    assert base != fingerprint(retitled, FIELDS)
    assert base != fingerprint(recategorised, FIELDS)


def test_fingerprint_uses_the_normalised_category_path() -> None:
    slashes = normalise_product(_messy_raw(raw_category="apparel & accessories/shoes/sneakers"))
    arrows = normalise_product(_messy_raw(raw_category="Apparel & Accessories > Shoes > Sneakers"))
    assert fingerprint(slashes, FIELDS) == fingerprint(arrows, FIELDS)


def test_fingerprint_rejects_unknown_fields() -> None:
    product = normalise_product(_messy_raw())
    with pytest.raises(ValueError, match="CATSTREAM_CATEGORISATION_FIELDS"):
        fingerprint(product, ["title", "colour_code"])


def test_a_negative_zero_price_is_zero_and_reads_back_as_itself() -> None:
    # Found by hypothesis: -0.0 became "-0.00", which renormalised as a negative price.
    once = normalise_product(_messy_raw(price=-0.0))
    assert once.price == "0.00"
    assert normalise_product(as_raw(once)).price == "0.00"


def test_a_cut_brand_is_what_a_second_pass_leaves() -> None:
    # Hypothesis found it: "ß.0" re-cases to "SS.0", the 3-character cut left "SS.",
    # and a second pass stripped the dot.
    raw = RawProduct(product_id="0", brand="ß.0")
    once = normalise_product(raw, max_chars=3)
    assert once.brand == "SS"
    assert normalise_product(as_raw(once), max_chars=3).brand == "SS"
