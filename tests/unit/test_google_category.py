"""A feed's google_product_category: resolved to the taxonomy, a feature, and weak labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catstream.taxonomy import Taxonomy, load_taxonomy
from feeds.mapping import load_mapping
from normaliser import normalise_product
from normaliser.google_category import (
    GOOGLE_TAXONOMY,
    google_category,
    google_category_in,
    google_category_path,
    resolve_google_category,
)
from schemas.events import RawProduct
from training.dataset import product_fields
from training.examples import load_training_set
from triton_models.categoriser.contract import raw_category_text

GOOGLE = load_taxonomy(GOOGLE_TAXONOMY)
DRESSES = GOOGLE.by_path("Apparel & Accessories > Clothing > Dresses")
HOSES = GOOGLE.by_path("Home & Garden > Lawn & Garden > Watering & Irrigation > Garden Hoses")


@pytest.mark.parametrize(
    "value",
    [
        DRESSES,
        str(DRESSES),
        f" {DRESSES} ",
        "Apparel & Accessories > Clothing > Dresses",
        "apparel &amp; accessories &gt; clothing &gt; dresses",
        f"{DRESSES} - Apparel & Accessories > Clothing > Dresses",
    ],
)
def test_an_id_or_a_path_resolves_to_the_category(value: str | int) -> None:
    assert resolve_google_category(value) == DRESSES


@pytest.mark.parametrize("value", ["999999999", 999999999, "Not > A > Category", ""])
def test_unknown_values_resolve_to_none(value: str | int) -> None:
    assert resolve_google_category(value) is None


def test_the_field_is_found_under_the_feeds_own_spelling() -> None:
    assert google_category({"g:google_product_category": str(HOSES)}) == HOSES
    assert google_category({"Google Product Category": str(HOSES)}) == HOSES
    assert google_category({"google_product_category": True}) is None
    assert google_category({"other": str(HOSES)}) is None


def test_a_taxonomy_sharing_googles_paths_resolves_by_path() -> None:
    custom = Taxonomy.from_lines(["Apparel & Accessories > Clothing > Dresses", "Toys"], "custom")
    assert google_category_in({"google_product_category": str(DRESSES)}, custom) == (
        custom.by_path("Apparel & Accessories > Clothing > Dresses")
    )
    assert google_category_in({"google_product_category": "Toys"}, custom) == custom.by_path("Toys")
    assert google_category_in({"google_product_category": str(HOSES)}, custom) is None


def test_the_feed_mappings_leave_the_column_in_extra() -> None:
    for network in ("generic", "rakuten"):
        row = {"id": "p1", "title": "Hose", "google_product_category": str(HOSES)}
        if network == "rakuten":
            row = {**row, "product_type": "Garden"}
        mapped = load_mapping(network).map_row(row)
        assert "google_product_category" in json.dumps(mapped.get("extra", {})), network


def _product(**fields: Any) -> Any:
    return normalise_product(RawProduct.model_validate({"product_id": "p1", **fields}))


def test_the_google_path_is_a_feature_in_training_and_in_the_request_alike() -> None:
    product = _product(
        title="Hose", raw_category="Garden > Watering", google_product_category=str(HOSES)
    )
    expected = f"Garden > Watering | {GOOGLE.path_str(HOSES)}"
    assert raw_category_text(product) == expected
    assert product_fields(product).raw_category == expected
    alone = _product(title="Hose", google_product_category=str(HOSES))
    assert raw_category_text(alone) == GOOGLE.path_str(HOSES)
    plain = _product(title="Hose", raw_category="Garden")
    assert raw_category_text(plain) == "Garden"
    assert google_category_path(plain.extra) == ""


def test_google_labels_label_unlabelled_products(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"product_id": "l1", "title": "Red dress", "category": DRESSES}))
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(
        "\n".join(
            json.dumps(row)
            for row in [
                {"product_id": "u1", "title": "Hose 30m", "google_product_category": str(HOSES)},
                {"product_id": "u2", "title": "Mystery", "google_product_category": "nope"},
                {"product_id": "u3", "title": "No category"},
            ]
        )
    )
    with_flag = load_training_set(GOOGLE, labels, None, unlabelled, google_labels=True)
    assert [(e.product.product_id, e.human) for e in with_flag.examples] == [
        ("l1", DRESSES),
        ("u1", HOSES),
    ]
    assert with_flag.rows[1]["category"] == GOOGLE.path_str(HOSES)
    without = load_training_set(GOOGLE, labels, None, None)
    assert [e.product.product_id for e in without.examples] == ["l1"]
    assert without.data_hash != with_flag.data_hash
