"""The exchange-rate table `/products/{id}/offers` converts prices with: dated, never a guess.

``CATSTREAM_OFFER_EXCHANGE_RATES_FILE`` names the table; without it the one
shipped in ``catstream/data/`` is used: the European Central Bank's euro foreign
exchange reference rates of 30 October 2026 (the ECB's daily ``eurofxref.csv``,
verbatim; see ``catstream/data/ATTRIBUTION.md``). Two formats are read:

- the ECB's daily file as the ECB publishes it (``eurofxref.csv`` inside
  ``eurofxref.zip``): a header ``Date, USD, JPY, ...`` and one row
  ``30 October 2026, 1.1172, 175.68, ...``, in units of each currency per euro;
- JSON: ``{"date": "2026-10-30", "base": "EUR", "source": "...", "rates": {"USD": 1.1172}}``,
  in units of each currency per unit of ``base``.

A table that cannot be read, has no date, or holds a rate that is not a positive
number is refused with the reason (``ExchangeRatesError``), never replaced by
another table. A table older than ``offer_exchange_rates_max_age_days`` is still
used, but every answer says it is stale and what to configure. Amounts convert
through the table's base: ``amount / rate[from] * rate[to]``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from catstream.errors import CatstreamError
from catstream.settings import Settings

DEFAULT_TABLE = Path(__file__).resolve().parent.parent / "catstream" / "data" / "eurofxref.csv"
DEFAULT_SOURCE = "European Central Bank euro foreign exchange reference rates (eurofxref.csv)"
SETTING = "CATSTREAM_OFFER_EXCHANGE_RATES_FILE"


class ExchangeRatesError(CatstreamError):
    """The configured exchange-rate table cannot be used (the message says why and what to do)."""


@dataclass(frozen=True)
class ExchangeRates:
    base: str
    rates: dict[str, Decimal]  # units of each currency per unit of ``base``
    as_of: date
    source: str
    path: Path

    def convert(self, amount: Decimal, currency: str, to: str) -> Decimal | None:
        """``amount`` of ``currency`` in ``to``, or None when either has no rate."""
        rate_from, rate_to = self.rates.get(currency), self.rates.get(to)
        if rate_from is None or rate_to is None:
            return None
        return amount / rate_from * rate_to

    def age_days(self, today: date) -> int:
        return (today - self.as_of).days

    def describe(self, settings: Settings, today: date | None = None) -> dict[str, Any]:
        """What the API and CLI show about the table: where from, how old, what to do."""
        today = today or datetime.now(UTC).date()
        age = self.age_days(today)
        limit = settings.offer_exchange_rates_max_age_days
        stale = bool(limit) and age > limit
        info: dict[str, Any] = {
            "source": self.source,
            "date": self.as_of.isoformat(),
            "age_days": age,
            "stale": stale,
            "file": str(self.path),
        }
        if stale:
            info["warning"] = (
                f"exchange rates are from {self.as_of.isoformat()} ({age} days old, over "
                f"offer_exchange_rates_max_age_days={limit}): point {SETTING} at a current "
                "table (the ECB's daily eurofxref.csv, or JSON with date, base and rates)"
            )
        return info


def missing_rate_reason(currency: str | None, rates: ExchangeRates, to: str) -> str:
    """Why an offer's price was not converted, and what to configure."""
    if not currency:
        return "the offer has no currency: the feed must give one (e.g. '12.99 EUR')"
    missing = currency if currency not in rates.rates else to
    return (
        f"no exchange rate for {missing} in {rates.path.name} ({rates.as_of.isoformat()}): add "
        f"{missing} to the table {SETTING} names"
    )


def exchange_rates(settings: Settings) -> ExchangeRates:
    """The configured table (read once per file version); ``ExchangeRatesError`` if unusable."""
    path = settings.offer_exchange_rates_file or DEFAULT_TABLE
    table = _cached(Path(path).resolve(), *_stamp(Path(path)))
    if settings.offer_currency.upper() not in table.rates:
        raise ExchangeRatesError(
            f"offer_currency {settings.offer_currency!r} is not in the exchange-rate table "
            f"{table.path} (it has {', '.join(sorted(table.rates))}): set "
            f"CATSTREAM_OFFER_CURRENCY to one of them or {SETTING} to a table that has it"
        )
    return table


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise ExchangeRatesError(
            f"exchange-rate table {path} cannot be read ({exc.strerror}): fix {SETTING}"
        ) from exc
    return stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int, size: int) -> ExchangeRates:
    return load_table(path)


def load_table(path: Path) -> ExchangeRates:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExchangeRatesError(
            f"exchange-rate table {path} cannot be read ({exc}): fix {SETTING}"
        ) from exc
    try:
        if path.suffix.lower() == ".json":
            return _from_json(path, json.loads(text))
        return _from_ecb_csv(path, text)
    except (ValueError, KeyError, TypeError) as exc:
        raise ExchangeRatesError(
            f"exchange-rate table {path} is not usable: {exc}. {SETTING} must name the ECB's "
            'daily eurofxref.csv or JSON like {"date": "2026-10-30", "base": "EUR", '
            '"source": "...", "rates": {"USD": 1.1172}}'
        ) from exc


def _from_ecb_csv(path: Path, text: str) -> ExchangeRates:
    rows = [
        [cell.strip() for cell in row if cell.strip()]
        for row in csv.reader(io.StringIO(text))
        if any(c.strip() for c in row)
    ]
    if len(rows) < 2 or rows[0][0].lower() != "date":
        raise ValueError("expected a header 'Date, USD, JPY, ...' and a row of rates")
    header, values = rows[0], rows[1]
    if len(values) != len(header):
        raise ValueError(f"the header names {len(header)} columns, the rates row has {len(values)}")
    as_of = _date(values[0])
    rates = {
        code: _rate(code, value)
        for code, value in zip(header[1:], values[1:], strict=True)
        if value.upper() != "N/A"  # the ECB's mark for a currency it no longer quotes
    }
    return _table("EUR", rates, as_of, f"{DEFAULT_SOURCE}, {as_of.isoformat()}", path)


def _from_json(path: Path, data: Any) -> ExchangeRates:
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with date, base and rates")
    base = str(data["base"]).upper()
    rates = {str(code).upper(): _rate(str(code), value) for code, value in data["rates"].items()}
    as_of = _date(str(data["date"]))
    return _table(base, rates, as_of, str(data.get("source") or path.name), path)


def _table(
    base: str, rates: dict[str, Decimal], as_of: date, source: str, path: Path
) -> ExchangeRates:
    if len(base) != 3 or not base.isalpha():
        raise ValueError(f"base {base!r} is not an ISO 4217 code")
    bad = [code for code in rates if len(code) != 3 or not code.isalpha()]
    if bad:
        raise ValueError(f"{', '.join(bad)} are not ISO 4217 codes")
    rates = {code.upper(): rate for code, rate in rates.items()}
    rates.setdefault(base, Decimal(1))
    if rates[base] != 1:
        raise ValueError(f"the base {base} must have the rate 1, not {rates[base]}")
    return ExchangeRates(base, rates, as_of, source, path)


def _rate(code: str, value: Any) -> Decimal:
    try:
        rate = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"the rate of {code} is {value!r}, not a number") from None
    if not rate.is_finite() or rate <= 0 or not math.isfinite(float(rate)):
        raise ValueError(f"the rate of {code} is {value!r}: rates must be positive numbers")
    return rate


def _date(text: str) -> date:
    for form in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text.strip(), form).date()
        except ValueError:
            continue
    raise ValueError(f"date {text!r} is neither YYYY-MM-DD nor like '30 October 2026'")
