"""Pair features, variants and records of the same-product matcher (pure)."""

from __future__ import annotations

import math

import numpy as np

from triton_models.matcher.features import (
    FEATURE_NAMES,
    MatchRecord,
    PairFeaturizer,
    normalise_code,
    number_units,
)
from triton_models.matcher.records import record_from_fields
from triton_models.matcher.variants import conflict_reason


def feature(a: MatchRecord, b: MatchRecord, name: str) -> float:
    featurizer = PairFeaturizer().fit([a.title, b.title, "some other product title"])
    return float(featurizer.transform([(a, b)])[0, FEATURE_NAMES.index(name)])


def test_number_units_read_capacities_lengths_and_inches() -> None:
    assert number_units("Galaxy S24 256GB, 20 cm cable") == {"gb": {256.0}, "cm": {20.0}}
    assert number_units('Laptop 15.6" 2 x 8 gb') == {"in": {15.6}, "x": {2.0}, "gb": {8.0}}
    assert number_units("model 4000") == {}


def test_capacities_that_differ_conflict_and_equal_ones_agree() -> None:
    a = MatchRecord("a", title="Apple iPhone 15 256GB black")
    b = MatchRecord("b", title="iPhone 15 (128 GB) black")
    c = MatchRecord("c", title="APPLE iPhone 15 256 GB - Black")
    assert feature(a, b, "units_conflict") == 1.0
    assert feature(a, c, "units_agree") == 1.0
    assert feature(a, c, "units_conflict") == 0.0
    assert conflict_reason(a, b) == "gb differs"
    assert conflict_reason(a, c) is None


def test_sizes_and_colours_make_variants() -> None:
    a = MatchRecord("a", title="Nike Air Max 90", size="42", colour="Red")
    assert conflict_reason(a, MatchRecord("b", title="Nike Air Max 90", size="43")) == (
        "size differs"
    )
    assert conflict_reason(a, MatchRecord("b", title="Nike Air Max 90", colour="red")) is None
    assert conflict_reason(
        MatchRecord("a", title="Pan 24 cm blue"), MatchRecord("b", title="Pan 24cm grey")
    ) == ("colour differs")


def test_model_number_found_in_the_other_title_with_separators_ignored() -> None:
    a = MatchRecord("a", title="innovera black toner cartridge", model_number="IVR-D3010")
    b = MatchRecord("b", title="Innovera IVRD3010 compatible toner, black")
    assert feature(a, b, "model_in_other") == 1.0
    assert feature(a, MatchRecord("c", title="innovera toner d3020"), "model_in_other") == 0.0


def test_missing_fields_are_nan_never_a_disagreement() -> None:
    a, b = MatchRecord("a", title="x y z"), MatchRecord("b", title="x y w")
    for name in ("brand_equal", "model_equal", "code_equal", "price_ratio", "image_cosine"):
        assert math.isnan(feature(a, b, name)), name


def test_price_ratio_only_within_one_currency() -> None:
    a = MatchRecord("a", title="t", price=80.0, currency="EUR")
    same = feature(a, MatchRecord("b", title="t", price=100.0, currency="EUR"), "price_ratio")
    assert np.isclose(same, 0.8)
    assert math.isnan(
        feature(a, MatchRecord("b", title="t", price=100.0, currency="GBP"), "price_ratio")
    )


def test_codes_compare_gtins_without_leading_zeros() -> None:
    assert normalise_code("0012345678905") == normalise_code("12345678905")
    record = record_from_fields(
        {"id": "p1", "title": "t", "extra": {"ean": "0012345678905", "mpn": "AB-12"}}
    )
    assert record.codes == frozenset({"12345678905", "ab12"})
    other = MatchRecord("b", title="t", codes=frozenset({"12345678905"}))
    assert feature(record, other, "code_equal") == 1.0


def test_text_cosine_uses_the_vectors() -> None:
    a = MatchRecord("a", title="t", text_vector=(1.0, 0.0))
    b = MatchRecord("b", title="t", text_vector=(1.0, 1.0))
    assert np.isclose(feature(a, b, "text_cosine"), 1 / math.sqrt(2))
