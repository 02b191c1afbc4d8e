"""The whole-record digest: stable across deliveries, changed by every published field."""

from __future__ import annotations

from typing import Any

import pytest

from normaliser.fingerprint import DELIVERY_FIELDS, RAW_DELIVERY_FIELDS, record_digest
from schemas.events import NormalisedProduct

BASE: dict[str, Any] = {
    "product_id": "p1",
    "updated_at": 1_700_000_000_000,
    "network": "awin",
    "merchant": "Toys Ltd",
    "title": "Red kite",
    "description": "A kite that is red",
    "brand": "Acme",
    "raw_category": "Toys > Outdoor",
    "category_path": ["Toys", "Outdoor"],
    "gender": "unisex",
    "size": "L",
    "colour": "red",
    "price": "12.99",
    "currency": "GBP",
    "warnings": ["url_invalid"],
    "image_urls": ["https://img.example/a.jpg", "https://img.example/b.jpg"],
    "url": "https://shop.example/kite",
    "extra": {"stock": 4, "ean": "123"},
    "raw": {"product_id": "p1", "title": "Red kite", "price": "12.99", "updated_at": "2024-01-01"},
    "fingerprint": "f" * 64,
    "changed": True,
}

# One different value per field that is published; a new NormalisedProduct field must
# be added here (or to DELIVERY_FIELDS, with a reason), or the coverage test fails.
CHANGES: dict[str, Any] = {
    "schema_version": 0,  # model_construct: any value; only the digest is computed
    "product_id": "p2",
    "op": "delete",
    "network": "cj",
    "merchant": "Kites plc",
    "title": "Blue kite",
    "description": "A kite that is blue",
    "brand": "Acme Toys",
    "raw_category": "Toys > Kites",
    "category_path": ["Toys", "Kites"],
    "gender": "girls",
    "size": "M",
    "colour": "blue",
    "price": "13.99",
    "currency": "EUR",
    "warnings": [],
    "image_urls": ["https://img.example/b.jpg", "https://img.example/a.jpg"],  # order counts
    "url": "https://shop.example/kite?v=2",
    "extra": {"stock": 0, "ean": "123"},
    "raw": {"product_id": "p1", "title": "Red kite", "price": "12.990"},
    "fingerprint": "e" * 64,
}


def _product(**changes: Any) -> NormalisedProduct:
    return NormalisedProduct.model_construct(**{**BASE, **changes})


def test_every_field_is_either_digested_or_per_delivery() -> None:
    fields = set(NormalisedProduct.model_fields)
    assert set(CHANGES) | DELIVERY_FIELDS == fields
    assert not set(CHANGES) & DELIVERY_FIELDS


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_changing_any_published_field_changes_the_digest(name: str) -> None:
    assert record_digest(_product(**{name: CHANGES[name]})) != record_digest(_product())


def test_per_delivery_metadata_does_not_change_it() -> None:
    raw_without = {k: v for k, v in BASE["raw"].items() if k not in RAW_DELIVERY_FIELDS}
    same = [
        _product(updated_at=1_800_000_000_000),
        _product(updated_at=None),
        _product(changed=False),
        _product(raw={**raw_without, "updated_at": 1_800_000_000_000}),
        _product(raw=raw_without),
    ]
    assert {record_digest(p) for p in same} == {record_digest(_product())}


def test_it_is_stable_across_key_order_and_processes() -> None:
    reordered = _product(
        extra={"ean": "123", "stock": 4},
        raw=dict(reversed(list(BASE["raw"].items()))),
    )
    assert record_digest(reordered) == record_digest(_product())
    # A fixed value: the digest is kept in the state table across restarts and releases,
    # so changing the canonical form silently would turn one re-feed into a full refresh.
    assert record_digest(_product()) == "f393fbc8b81cc5adacce15f149c21ffc"
    assert record_digest(NormalisedProduct.model_validate(BASE)) == record_digest(_product())


def test_a_lone_surrogate_in_extra_does_not_break_it() -> None:
    assert record_digest(_product(extra={"note": "\ud800"})) != record_digest(_product())
