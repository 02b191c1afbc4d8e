"""Network mappings: shipped files load, columns map loosely, the rest goes to extra."""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds.mapping import (
    MappingError,
    available_networks,
    column_key,
    load_mapping,
    load_mapping_file,
)
from schemas.events import RawProduct


def test_at_least_three_networks_plus_generic() -> None:
    networks = available_networks()
    assert "generic" in networks
    assert len(set(networks) - {"generic"}) >= 3
    formats = {load_mapping(n).format for n in networks}
    assert {"csv", "tsv", "xml"} <= formats


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("g:Image-Link", "image_link"),
        ("Fashion:suitable_for", "fashion_suitable_for"),
        (" Product Name ", "product_name"),
    ],
)
def test_column_keys(name: str, key: str) -> None:
    assert column_key(name) == key


def test_awin_row() -> None:
    event = load_mapping("awin").map_row(
        {
            "aw_product_id": "123",
            "product_name": "Shoe",
            "search_price": "12.99",
            "currency": "",
            "merchant_image_url": "https://a/1.jpg",
            "aw_image_url": "",
            "alternate_image": "https://a/2.jpg",
            "Fashion:suitable_for": "Damen",
            "delivery_cost": "4.95",
            "in_stock": "",
        }
    )
    assert event == {
        "product_id": "123",
        "title": "Shoe",
        "price": "12.99",
        "currency": "GBP",
        "image_urls": ["https://a/1.jpg", "https://a/2.jpg"],
        "gender": "Damen",
        "network": "awin",
        "extra": {"delivery_cost": "4.95", "price_locale": "en-GB"},
    }
    RawProduct.model_validate(event)


def test_cj_splits_packed_images_and_reads_deletes() -> None:
    event = load_mapping("cj").map_row(
        {
            "ID": "CJ-1",
            "IMAGE_LINK": "https://a/1.jpg",
            "ADDITIONAL_IMAGE_LINK": "https://a/2.jpg, https://a/3.jpg",
            "ACTION": "Deleted",
        }
    )
    assert event["image_urls"] == ["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg"]
    assert event["op"] == "delete"


def test_rakuten_xml_lists_and_nested_fields() -> None:
    event = load_mapping("rakuten").map_row(
        {
            "id": "RK1",
            "image_link": "https://a/1.jpg",
            "additional_image_link": ["https://a/2.jpg", "https://a/3.jpg"],
            "shipping": {"country": "DE", "price": "4.95 EUR"},
        }
    )
    assert event["image_urls"] == ["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg"]
    assert event["extra"]["shipping"] == {"country": "DE", "price": "4.95 EUR"}
    assert event["currency"] == "EUR"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"Name": "A", "Product_Type": "X > Y", "ImageURL": "u", "sku": "9"},
            {"title": "A", "raw_category": "X > Y", "image_urls": ["u"], "product_id": "9"},
        ),
        (
            {"product_name": "B", "merchant_category": "Z", "image": "u", "id": 7},
            {"title": "B", "raw_category": "Z", "image_urls": ["u"], "product_id": "7"},
        ),
        (
            {"title": "C", "category": "W", "image_link": "u", "product_id": "p"},
            {"title": "C", "raw_category": "W", "image_urls": ["u"], "product_id": "p"},
        ),
    ],
)
def test_generic_guesses_common_column_names(
    row: dict[str, object], expected: dict[str, object]
) -> None:
    event = load_mapping("generic").map_row(row)
    assert {k: event[k] for k in expected} == expected


def test_wrong_types_pass_through_for_the_stream_to_dead_letter() -> None:
    event = load_mapping("generic").map_row({"id": "1", "price": {"amount": 3}, "title": [1]})
    assert event["price"] == {"amount": 3}
    assert event["title"] == [1]


def test_yaml_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(
        "name: shop\nfields:\n  product_id: [Artikelnummer]\n  title: Bezeichnung\n"
        "defaults:\n  currency: CHF\n"
    )
    event = load_mapping_file(path).map_row({"Artikelnummer": "A1", "Bezeichnung": "Uhr"})
    assert event == {"product_id": "A1", "title": "Uhr", "currency": "CHF", "network": "shop"}


def test_mapping_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="--network generic"):
        load_mapping("nosuchnetwork")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[fields]\nproduct_id = "id"\nprice_eur = "p"\n')
    with pytest.raises(MappingError, match="unknown event fields"):
        load_mapping_file(bad)
    no_id = tmp_path / "noid.toml"
    no_id.write_text('name = "x"\n[fields]\ntitle = "t"\n')
    with pytest.raises(MappingError, match="product_id"):
        load_mapping_file(no_id)
