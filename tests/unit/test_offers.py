"""/products/{id}/offers: prices converted with a dated rate table, cheapest first (pure)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from catstream.settings import Settings
from workers.exchange_rates import (
    DEFAULT_TABLE,
    ExchangeRatesError,
    exchange_rates,
    load_table,
)
from workers.offers import cheapest_first, normalised_price, offer_entry
from workers.offers_cli import format_table


def _table(tmp_path: Path, rates: dict[str, Any], base: str = "EUR") -> Path:
    path = tmp_path / "rates.json"
    path.write_text(
        json.dumps({"date": "2026-11-30", "base": base, "source": "test rates", "rates": rates})
    )
    return path


def _settings(path: Path, currency: str = "EUR") -> Settings:
    return Settings(offer_currency=currency, offer_exchange_rates_file=path)


def test_the_shipped_default_is_the_ecb_table_with_its_date() -> None:
    rates = exchange_rates(Settings())
    assert rates.path == DEFAULT_TABLE
    assert rates.base == "EUR"
    assert rates.as_of == date(2026, 10, 30)
    assert "European Central Bank" in rates.source
    assert rates.rates["GBP"] == Decimal("0.83380")
    assert rates.rates["USD"] == Decimal("1.1172")
    assert rates.rates["EUR"] == 1
    # 10 GBP in EUR: 10 / 0.8338.
    assert rates.convert(Decimal(10), "GBP", "EUR") == Decimal(10) / Decimal("0.83380")


def test_prices_are_converted_with_the_configured_table(tmp_path: Path) -> None:
    settings = _settings(_table(tmp_path, {"GBP": "0.8", "USD": 1.25}))
    rates = exchange_rates(settings)
    assert normalised_price("10.00", "GBP", settings, rates) == (10.0, "GBP", 12.5)
    assert normalised_price(7, "eur", settings, rates) == (7.0, "EUR", 7.0)
    assert normalised_price("9.99", "JPY", settings, rates) == (9.99, "JPY", None)
    assert normalised_price(None, "EUR", settings, rates) == (None, "EUR", None)
    # Another target currency converts through the table's base.
    in_usd = _settings(settings.offer_exchange_rates_file or tmp_path, currency="USD")
    assert normalised_price("8.00", "GBP", in_usd, exchange_rates(in_usd))[2] == 12.5


def test_cheapest_converted_first_then_unconverted_with_the_reason(tmp_path: Path) -> None:
    settings = _settings(_table(tmp_path, {"GBP": 1 / 1.2}))
    rates = exchange_rates(settings)
    sources: list[dict[str, Any]] = [
        {"product_id": "a", "price": 11.0, "currency": "EUR"},
        {"product_id": "b", "price": 9.0, "currency": "GBP"},  # 10.80 EUR
        {"product_id": "c", "price": 1.0, "currency": "JPY"},  # no rate
        {"product_id": "d", "currency": "EUR"},  # no price
        {"product_id": "e", "price": 12.0, "currency": "EUR"},
    ]
    ordered = cheapest_first([offer_entry(s, settings, rates) for s in sources])
    assert [o["product_id"] for o in ordered] == ["b", "a", "e", "c", "d"]
    assert [o["unconverted"] is None for o in ordered] == [True, True, True, False, False]
    assert "no exchange rate for JPY" in ordered[3]["unconverted"]
    assert "CATSTREAM_OFFER_EXCHANGE_RATES_FILE" in ordered[3]["unconverted"]
    assert ordered[4]["unconverted"] == "the offer has no price"


def test_the_cli_says_what_to_configure(tmp_path: Path) -> None:
    settings = _settings(_table(tmp_path, {"GBP": 0.8}))
    rates = exchange_rates(settings)
    offers = [offer_entry({"product_id": "c", "price": 1.0, "currency": "JPY"}, settings, rates)]
    text = format_table(
        {
            "product_id": "p",
            "offer_group": "g",
            "currency": "EUR",
            "exchange_rates": rates.describe(settings, today=date(2026, 12, 30)),
            "offers": offers,
            "configure": "no exchange rate for JPY: add them",
        }
    )
    assert "test rates" in text
    assert "30 days old" in text
    assert "CATSTREAM_OFFER_EXCHANGE_RATES_FILE" in text
    assert "not converted: no exchange rate for JPY" in text
    assert "to convert every price: no exchange rate for JPY" in text


def test_an_old_table_is_flagged_stale(tmp_path: Path) -> None:
    settings = _settings(_table(tmp_path, {"GBP": 0.8}))
    rates = exchange_rates(settings)
    assert rates.describe(settings, today=date(2026, 12, 7))["stale"] is False
    old = rates.describe(settings, today=date(2026, 12, 8))
    assert old["stale"] is True
    assert old["age_days"] == 8
    assert "CATSTREAM_OFFER_EXCHANGE_RATES_FILE" in old["warning"]
    never = settings.model_copy(update={"offer_exchange_rates_max_age_days": 0})
    assert rates.describe(never, today=date(2030, 1, 1))["stale"] is False


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json", "not usable"),
        ('{"base": "EUR", "rates": {"GBP": 0.8}}', "date"),
        ('{"date": "2026-11-30", "base": "EUR", "rates": {"GBP": 0}}', "positive"),
        ('{"date": "2026-11-30", "base": "EUR", "rates": {"GBP": "x"}}', "not a number"),
        ('{"date": "2026-11-30", "base": "EUR", "rates": {"GBP": "NaN"}}', "positive"),
        ('{"date": "2026-11-30", "base": "EUR", "rates": {"EUR": 2}}', "rate 1"),
        ('{"date": "yesterday", "base": "EUR", "rates": {"GBP": 1}}', "YYYY-MM-DD"),
    ],
)
def test_a_broken_table_is_refused_with_the_reason(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "rates.json"
    path.write_text(content)
    with pytest.raises(ExchangeRatesError, match=why):
        exchange_rates(_settings(path))


def test_a_missing_file_or_currency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExchangeRatesError, match="cannot be read"):
        exchange_rates(_settings(tmp_path / "nowhere.csv"))
    with pytest.raises(ExchangeRatesError, match="CATSTREAM_OFFER_CURRENCY"):
        exchange_rates(_settings(_table(tmp_path, {"GBP": 0.8}), currency="XAU"))


def test_the_ecb_daily_csv_is_read_as_published(tmp_path: Path) -> None:
    path = tmp_path / "eurofxref.csv"
    path.write_text("Date, USD, JPY, CYP, \n2 December 2026, 1.1000, 170.50, N/A, \n")
    rates = load_table(path)
    assert rates.as_of == date(2026, 12, 2)
    assert rates.rates == {"USD": Decimal("1.1000"), "JPY": Decimal("170.50"), "EUR": 1}
    path.write_text("Date, USD, JPY\n2 December 2026, 1.1\n")
    with pytest.raises(ExchangeRatesError, match="columns"):
        load_table(path)
