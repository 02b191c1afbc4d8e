"""Prices as feeds write them → a decimal with two places plus an ISO 4217 code.

Accepted: ``£1,299.00``, ``1.299,00 EUR``, ``€ 12,50``, ``USD 1 299.00``,
``1 299,00 kr``, ``CHF 1'299.50``, ``12``, numbers. The decimal separator is read
from the text when the text decides it (``1,299.00`` and ``1.299,00`` both do; so
does a single separator followed by one, two or four-plus digits); only a lone
separator followed by exactly three digits (``1.299``, ``1,299``) is ambiguous,
and then the locale hint decides (a ``price_locale`` such as ``de-DE``, else the
currency's usual convention). The result always has two decimals, so a
normalised price (``1299.00``) reads back as itself. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MAX_PRICE = Decimal("1000000000")
_CENTS = Decimal("0.01")

ISO_CURRENCIES = frozenset(
    "AED ARS AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY "
    "KRW MXN MYR NOK NZD PEN PHP PKR PLN RON RUB SAR SEK SGD THB TRY TWD UAH USD VND ZAR".split()
)
# Symbols and local abbreviations. "$", "kr", "¥" are shared by several currencies:
# the currency column wins over them; an ISO code or any other symbol wins over it.
_SYMBOLS: dict[str, str] = {
    "£": "GBP",
    "€": "EUR",
    "$": "USD",
    "US$": "USD",
    "C$": "CAD",
    "CA$": "CAD",
    "A$": "AUD",
    "AU$": "AUD",
    "NZ$": "NZD",
    "¥": "JPY",
    "円": "JPY",
    "₹": "INR",
    "₩": "KRW",
    "₺": "TRY",
    "₽": "RUB",
    "zł": "PLN",
    "kr": "SEK",
    "kr.": "DKK",
    "kč": "CZK",
    "ft": "HUF",
    "fr.": "CHF",
    "r$": "BRL",
    "lei": "RON",
}
_SYMBOLS_LONGEST_FIRST = sorted(_SYMBOLS, key=len, reverse=True)
_AMBIGUOUS_SYMBOLS = frozenset({"$", "kr", "kr.", "¥", "fr."})
# Currencies whose home locales write a decimal comma ("12,50"); the rest use a point.
_COMMA_DECIMAL_CURRENCIES = frozenset(
    "EUR SEK NOK DKK PLN CZK HUF RON BGN BRL TRY RUB UAH IDR VND ARS CLP COP ISK".split()
)
# Locales (language-REGION) with a decimal comma; others in a hint mean a point.
_COMMA_DECIMAL_LANGUAGES = frozenset(
    "de fr es it nl sv nb nn no da fi pl cs sk hu "
    "ro bg pt tr ru uk id vi el hr sl lt lv et is".split()
)
_CODE = re.compile(r"(?<![A-Za-z])([A-Za-z]{3})(?![A-Za-z])")
_NUMBER = re.compile(r"\d(?:[\d.,'’ \u00a0\u202f\u2009]*\d)?")
_NUMBER_SPACES = re.compile(r"[ '’\u00a0\u202f\u2009]")
_NOISE = re.compile(
    r"[\s:*=~]|\b(?:from|ab|à partir de|dès|vanaf|från|desde|da|now|nu|jetzt)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class ParsedPrice:
    amount: str | None
    currency: str | None
    warnings: list[str] = field(default_factory=list)


def _decimal_comma_hint(currency: str | None, locale: str | None) -> bool:
    if locale:
        language = locale.replace("_", "-").split("-")[0].lower()
        return language in _COMMA_DECIMAL_LANGUAGES
    return currency in _COMMA_DECIMAL_CURRENCIES


def _number_to_decimal(number: str, decimal_comma: bool) -> Decimal:
    digits = _NUMBER_SPACES.sub("", number)
    last_dot, last_comma = digits.rfind("."), digits.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        decimal_sep = "." if last_dot > last_comma else ","
    elif last_dot >= 0 or last_comma >= 0:
        sep = "." if last_dot >= 0 else ","
        tail = len(digits) - digits.rfind(sep) - 1
        if digits.count(sep) > 1:
            decimal_sep = ""  # "1.299.000": thousands only
        elif tail == 3:
            decimal_sep = "," if decimal_comma else "."
            decimal_sep = sep if decimal_sep == sep else ""
        else:
            decimal_sep = sep
    else:
        decimal_sep = ""
    thousands = {".", ","} - {decimal_sep}
    for sep in thousands:
        digits = digits.replace(sep, "")
    if decimal_sep:
        if digits.count(decimal_sep) != 1:
            raise InvalidOperation(number)
        digits = digits.replace(decimal_sep, ".")
    return Decimal(digits)


def _currency_in_text(text: str) -> tuple[str | None, str | None, str]:
    """(currency in the price text, the symbol it was read from, the text without it)."""
    for match in _CODE.finditer(text):
        code = match.group(1).upper()
        if code in ISO_CURRENCIES:
            return code, None, text[: match.start()] + " " + text[match.end() :]
    lowered = text.lower()
    for symbol in _SYMBOLS_LONGEST_FIRST:
        position = lowered.find(symbol)
        if position >= 0:
            rest = text[:position] + " " + text[position + len(symbol) :]
            return _SYMBOLS[symbol], symbol, rest
    return None, None, text


def clean_currency(value: str | None) -> tuple[str | None, list[str]]:
    """An ISO code from a currency column ('eur', 'EUR ', '€'), or None with a warning."""
    if value is None or not value.strip():
        return None, []
    text = value.strip()
    if text.upper() in ISO_CURRENCIES:
        return text.upper(), []
    symbol = _SYMBOLS.get(text.lower())
    if symbol:
        return symbol, []
    return None, [f"currency_unknown: {text[:40]!r}"]


def _format(amount: Decimal) -> str:
    # copy_abs for zero: -0.0 from a feed would print as "-0.00", which reads back as
    # a negative price (a price of zero has no sign).
    amount = amount.copy_abs() if amount.is_zero() else amount
    return str(amount.quantize(_CENTS, rounding=ROUND_HALF_UP))


def _parse_number_value(value: float | int, currency: str | None) -> ParsedPrice:
    if isinstance(value, float) and not math.isfinite(value):
        return ParsedPrice(None, currency, [f"price_unparsable: {value!r}"])
    if isinstance(value, int) and abs(value) >= MAX_PRICE:
        # Never str() a huge int: past 4,300 digits Python refuses to convert it.
        shown = f"an integer of about {int(value.bit_length() * math.log10(2)) + 1:,} digits"
        sign = "price_negative" if value < 0 else "price_too_large"
        return ParsedPrice(None, currency, [f"{sign}: {shown}"])
    amount = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    return _checked(amount, currency, repr(value))


def _checked(amount: Decimal, currency: str | None, shown: str) -> ParsedPrice:
    if amount < 0:
        return ParsedPrice(None, currency, [f"price_negative: {shown[:60]}"])
    if amount >= MAX_PRICE:
        return ParsedPrice(None, currency, [f"price_too_large: {shown[:60]}"])
    return ParsedPrice(_format(amount), currency)


def parse_price(
    value: str | float | int | None,
    currency: str | None = None,
    locale: str | None = None,
) -> ParsedPrice:
    """Parse a feed price. ``currency`` is the feed's currency column (already cleaned)."""
    if value is None or isinstance(value, bool):
        return ParsedPrice(None, currency)
    if isinstance(value, int | float):
        return _parse_number_value(value, currency)
    text = value.strip()
    if not text:
        return ParsedPrice(None, currency)
    found, symbol, rest = _currency_in_text(text)
    warnings: list[str] = []
    chosen = currency or found
    if found and currency and found != currency and symbol not in _AMBIGUOUS_SYMBOLS:
        # An ISO code or a one-currency symbol in the price beats the column, which
        # is often just the network's default; the disagreement is worth a warning.
        warnings.append(f"currency_conflict: column {currency}, price text {found}")
        chosen = found
    numbers = _NUMBER.findall(rest)
    leftover = _NOISE.sub("", _NUMBER.sub("", rest)).strip(".,-")
    negative = rest.strip().startswith("-")
    if len(numbers) != 1 or leftover:
        return ParsedPrice(None, chosen, [*warnings, f"price_unparsable: {text[:60]!r}"])
    try:
        amount = _number_to_decimal(numbers[0], _decimal_comma_hint(chosen, locale))
    except InvalidOperation:
        return ParsedPrice(None, chosen, [*warnings, f"price_unparsable: {text[:60]!r}"])
    if negative:
        amount = -amount
    parsed = _checked(amount, chosen, repr(text))
    return ParsedPrice(parsed.amount, parsed.currency, [*warnings, *parsed.warnings])
