"""``normalise_product``: one ``RawProduct`` → one ``NormalisedProduct``.

Contract:

* never raises for a valid ``RawProduct``; problems with a value become entries in
  ``warnings`` (``price_unparsable: '…'``, ``gender_unrecognised: '…'``, …) and the
  field becomes None, never a dead letter;
* keeps ``product_id`` exactly and passes ``op`` and ``extra`` through;
* ``raw`` holds the input fields as received;
* a delete carries only ``product_id``, ``op`` and ``updated_at``;
* idempotent: feeding a normalised product's fields back in as a ``RawProduct``
  (see ``as_raw``) yields the same normalised fields and no warnings.

``fingerprint`` and ``changed`` are left at their defaults for the stream to fill.
Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from normaliser.brand import canonical_brand
from normaliser.category_path import split_category
from normaliser.images import clean_image_urls, clean_url
from normaliser.price import clean_currency, parse_price
from normaliser.text import clean_text, clean_text_checked
from normaliser.vocabulary import canonical_gender, canonical_size
from schemas.events import NormalisedProduct, RawProduct, parse_updated_at

SHORT_FIELD_CHARS = 200
CATEGORY_CHARS = 1000
# The fields a RawProduct and a NormalisedProduct share (what ``as_raw`` copies back).
SHARED_FIELDS = (
    "product_id",
    "op",
    "updated_at",
    "network",
    "merchant",
    "title",
    "description",
    "brand",
    "raw_category",
    "gender",
    "size",
    "colour",
    "price",
    "currency",
    "image_urls",
    "url",
    "extra",
)


def _updated_at(value: str | int | None) -> tuple[int | None, list[str]]:
    try:
        return parse_updated_at(value), []
    except (ValueError, OverflowError, OSError):
        # RawProduct validated it, but be safe: a bad timestamp is not worth a crash.
        return None, [f"updated_at_unparsable: {str(value)[:40]!r}"]


def _cut_brand(brand: str | None, short: int) -> str | None:
    """``brand`` within ``short`` characters, where normalising it again changes nothing.

    A cut can leave what ``canonical_brand`` strips ("SS." from "ß.0" re-cased to
    "SS.0") and re-casing can lengthen a word (ß → SS), so cut and canonicalise until
    neither changes it (two rounds in practice; four at most).
    """
    for _ in range(4):
        if brand is None:
            return None
        cut = canonical_brand(brand[:short].rstrip())
        if cut == brand:
            break
        brand = cut
    return brand


def _text(name: str, value: object, max_chars: int, warnings: list[str]) -> str | None:
    text, truncated = clean_text_checked(value, max_chars)
    if truncated:
        warnings.append(f"{name}_truncated: cut to {max_chars} characters")
    return text


def _price(raw: RawProduct, warnings: list[str]) -> tuple[str | None, str | None]:
    currency, currency_warnings = clean_currency(clean_text(raw.currency, SHORT_FIELD_CHARS))
    warnings.extend(currency_warnings)
    locale = raw.extra.get("price_locale")
    value = raw.price
    if isinstance(value, str):
        value = clean_text(value, SHORT_FIELD_CHARS) or ""
    parsed = parse_price(value, currency, locale if isinstance(locale, str) else None)
    warnings.extend(parsed.warnings)
    return parsed.amount, parsed.currency


def _raw_fields(raw: RawProduct) -> dict[str, Any]:
    return raw.model_dump(exclude={"schema_version", "extra"}, exclude_none=True)


def normalise_product(raw: RawProduct, *, max_chars: int = 5000) -> NormalisedProduct:
    """Clean one raw product (see the module docstring for the contract)."""
    updated_at, warnings = _updated_at(raw.updated_at)
    if raw.op == "delete":
        return NormalisedProduct(product_id=raw.product_id, op="delete", updated_at=updated_at)
    short = min(SHORT_FIELD_CHARS, max_chars)
    raw_category = _text("raw_category", raw.raw_category, min(CATEGORY_CHARS, max_chars), warnings)
    # Gender and size map onto small vocabularies ("female", "One Size", ...): capping their
    # input below the vocabularies' own words would make normalising twice change the value.
    gender_text = _text("gender", raw.gender, SHORT_FIELD_CHARS, warnings)
    gender, gender_warnings = canonical_gender(gender_text)
    warnings.extend(gender_warnings)
    price, currency = _price(raw, warnings)
    image_urls, image_warnings = clean_image_urls(raw.image_urls)
    warnings.extend(image_warnings)
    url = clean_url(raw.url)
    if raw.url and url is None:
        warnings.append(f"url_dropped: {raw.url[:60]!r} is not an http(s) URL")
    brand = canonical_brand(_text("brand", raw.brand, short, warnings))
    # Built, not validated: every value comes from the validated RawProduct through the
    # cleaners, and the next stage validates the event once, on receipt (issue 10).
    return NormalisedProduct.model_construct(
        product_id=raw.product_id,
        op=raw.op,
        updated_at=updated_at,
        network=_text("network", raw.network, short, warnings),
        merchant=_text("merchant", raw.merchant, short, warnings),
        title=_text("title", raw.title, max_chars, warnings),
        description=_text("description", raw.description, max_chars, warnings),
        brand=_cut_brand(brand, short),
        raw_category=raw_category,
        category_path=split_category(raw_category),
        gender=gender,
        size=canonical_size(_text("size", raw.size, SHORT_FIELD_CHARS, warnings)),
        colour=_text("colour", raw.colour, short, warnings),
        price=price,
        currency=currency,
        warnings=warnings,
        image_urls=image_urls,
        url=url,
        extra=raw.extra,
        raw=_raw_fields(raw),
    )


def as_raw(product: NormalisedProduct) -> RawProduct:
    """The normalised product's shared fields as a RawProduct (for re-normalising)."""
    return RawProduct.model_validate({name: getattr(product, name) for name in SHARED_FIELDS})
