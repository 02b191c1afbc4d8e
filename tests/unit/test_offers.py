"""/products/{id}/offers: prices converted to one currency, cheapest first (pure)."""

from __future__ import annotations

from typing import Any

from catstream.settings import Settings
from workers.offers import cheapest_first, normalised_price, offer_entry


def test_prices_are_converted_with_the_configured_rates() -> None:
    settings = Settings(offer_currency="EUR", offer_exchange_rates={"EUR": 1.0, "GBP": 1.2})
    assert normalised_price("10.00", "GBP", settings) == (10.0, "GBP", 12.0)
    assert normalised_price(7, "eur", settings) == (7.0, "EUR", 7.0)
    assert normalised_price("9.99", "JPY", settings) == (9.99, "JPY", None)
    assert normalised_price(None, "EUR", settings) == (None, "EUR", None)


def test_cheapest_converted_first_then_unconverted_then_unpriced() -> None:
    settings = Settings(offer_currency="EUR", offer_exchange_rates={"EUR": 1.0, "GBP": 1.2})
    sources: list[dict[str, Any]] = [
        {"product_id": "a", "price": 11.0, "currency": "EUR"},
        {"product_id": "b", "price": 9.0, "currency": "GBP"},  # 10.80 EUR
        {"product_id": "c", "price": 1.0, "currency": "JPY"},  # no rate
        {"product_id": "d", "currency": "EUR"},  # no price
        {"product_id": "e", "price": 12.0, "currency": "EUR"},
    ]
    ordered = cheapest_first([offer_entry(s, settings) for s in sources])
    assert [o["product_id"] for o in ordered] == ["b", "a", "e", "c", "d"]
