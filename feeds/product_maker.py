"""Makes one plausible, messy product for a taxonomy leaf (for the feed generator).

The title is built from the leaf's own words (one alternative of ``A & B``,
sometimes singular, sometimes translated) with a brand, an adjective, a colour,
a size or material, in the product's language; then the mess real feeds have is
added: HTML, entities, shouting or lower case, stray whitespace, emoji. Category
paths, prices, genders and images are written the many ways feeds write them.
All randomness comes from the ``random.Random`` passed in, so a seed fixes it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from feeds import catalogue_words as words

BASE_TIME = datetime(2024, 5, 1, tzinfo=UTC)
_PACK_SIZES = ("2er Pack", "Set of 2", "500 ml", "1,5 m", "XL", "3-pack")
_ALTERNATIVES = re.compile(r",\s*|\s+&\s+|\s+and\s+")


@dataclass
class MadeProduct:
    """A generated product: its event fields (messy, by RawProduct name) and truth."""

    product_id: str
    ordinal: int
    category_id: int
    category_path: tuple[str, ...]
    locale: str
    fields: dict[str, Any] = field(default_factory=dict)
    noun: str = ""


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def leaf_noun(rng: random.Random, leaf: str, language: str) -> str:
    """A product noun from a leaf name: 'Shirts & Tops' → 'Shirt' or 'Tops'."""
    options = [o.strip() for o in _ALTERNATIVES.split(leaf) if o.strip()]
    noun = rng.choice(options) if options else leaf
    if rng.random() < 0.5:
        parts = noun.split(" ")
        noun = " ".join([*parts[:-1], _singular(parts[-1])])
    translations = words.NOUNS.get(language, {})
    return " ".join(translations.get(w, w) for w in noun.split(" "))


def _brand(rng: random.Random, top_level: str) -> str:
    brand = rng.choice(words.BRANDS.get(top_level, words.GENERIC_BRANDS))
    roll = rng.random()
    if roll < 0.12:
        return brand.upper()
    if roll < 0.2:
        return brand.lower() + " "
    if roll < 0.25:
        return brand + "™"
    return brand


def messy_title(rng: random.Random, title: str, brand: str) -> str:
    """Add feed mess to a clean title."""
    roll = rng.random()
    if roll < 0.1:
        title = title.upper()
    elif roll < 0.15:
        title = title.lower()
    if rng.random() < 0.08 and brand.strip() in title:
        title = title.replace(brand.strip(), f"<b>{brand.strip()}</b>", 1)
    if rng.random() < 0.1:
        title = title.replace(" & ", " &amp; ").replace("é", "&eacute;")
    if rng.random() < 0.06:
        title = f"{rng.choice(words.EMOJI)} {title} {rng.choice(words.EMOJI)}"
    if rng.random() < 0.06:
        title = f"{rng.choice(words.TITLE_PREFIXES)} {title}"
    if rng.random() < 0.15:
        title = "  " + title.replace(" ", "  ", 1) + " \t"
    return title


def make_title(rng: random.Random, product: MadeProduct, brand: str, colour: str) -> str:
    language = words.LOCALES[product.locale][0]
    adjective = rng.choice(words.ADJECTIVES[language])
    noun = product.noun
    template = rng.randrange(4)
    if template == 0:
        title = f"{brand.strip()} {adjective} {noun} {colour}"
    elif template == 1:
        title = f"{brand.strip()} {noun} - {colour}"
    elif template == 2:
        title = f"{adjective} {noun} {rng.choice(words.MATERIALS[language])} ({brand.strip()})"
    else:
        title = f"{noun} {brand.strip()} {colour}, {rng.choice(_PACK_SIZES)}"
    gender = product.fields.get("_gender")
    if gender:
        title = f"{title} {words.FOR_GENDER[language][gender]}"
    return title


def make_description(rng: random.Random, product: MadeProduct, title: str, colour: str) -> str:
    language = words.LOCALES[product.locale][0]
    sentences = " ".join(
        rng.sample(words.DESCRIPTION_SENTENCES[language], k=2)
        if len(words.DESCRIPTION_SENTENCES[language]) > 1
        else words.DESCRIPTION_SENTENCES[language]
    )
    material = rng.choice(words.MATERIALS[language])
    style = rng.randrange(3)
    if style == 0:
        return (
            f"<p><strong>{title.strip()}</strong></p>\n<p>{sentences}</p>"
            f"<ul><li>{material}</li><li>{colour}</li></ul>"
        )
    if style == 1:
        return f"{title.strip()}. {sentences} Material: {material}.&nbsp;&nbsp;"
    return f"{sentences}\n\n{material.capitalize()} &ndash; {colour}"


def raw_category(rng: random.Random, path: tuple[str, ...]) -> str:
    """The category the way a merchant writes it: partial, re-worded, any delimiter, any case."""
    segments = list(path)
    roll = rng.random()
    if roll < 0.2 and len(segments) > 2:
        segments = segments[-2:]
    elif roll < 0.28:
        segments = segments[-1:]
    elif roll < 0.4 and segments[0] in words.MERCHANT_DEPARTMENTS:
        segments[0] = rng.choice(words.MERCHANT_DEPARTMENTS[segments[0]])
    delimiter = rng.choice(words.CATEGORY_DELIMITERS)
    if delimiter.strip() == "," and any("," in s for s in segments):
        delimiter = " > "
    if delimiter == "/" and all(" " not in s for s in segments):
        delimiter = " / "  # "Shoes/Sneakers" would read as one name
    text = delimiter.join(segments)
    casing = rng.random()
    if casing < 0.12:
        text = text.lower()
    elif casing < 0.22:
        text = text.upper()
    if rng.random() < 0.1:
        text = text.replace("&", "&amp;")
    return text


def _amount(rng: random.Random) -> Decimal:
    value = Decimal(str(round(rng.lognormvariate(3.4, 1.1), 2)))
    if rng.random() < 0.5:
        value = value.to_integral_value() - Decimal("0.01") if value > 1 else value
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _group(integer: str, separator: str) -> str:
    groups: list[str] = []
    while len(integer) > 3:
        groups.insert(0, integer[-3:])
        integer = integer[:-3]
    groups.insert(0, integer)
    return separator.join(groups)


def price_text(rng: random.Random, amount: Decimal, locale: str) -> str:
    """A price as a merchant in ``locale`` writes it (sometimes bare, sometimes empty)."""
    roll = rng.random()
    if roll < 0.03:
        return ""
    if roll < 0.04:
        return rng.choice(["Free", "POA", "n/a"])
    integer, cents = f"{amount:.2f}".split(".")
    if roll < 0.09:
        return integer  # "12"
    if roll < 0.2:
        return f"{amount:.2f}"  # plain decimal, currency in its own column
    if locale == "en-GB":
        return rng.choice(
            [f"£{_group(integer, ',')}.{cents}", f"{_group(integer, ',')}.{cents} GBP"]
        )
    if locale == "en-US":
        return rng.choice(
            [f"${_group(integer, ',')}.{cents}", f"USD {_group(integer, ' ')}.{cents}"]
        )
    if locale in ("de-DE", "es-ES"):
        return rng.choice(
            [f"{_group(integer, '.')},{cents} EUR", f"{_group(integer, '.')},{cents} €"]
        )
    if locale == "fr-FR":
        return f"{_group(integer, chr(0x202F))},{cents} €"
    if locale == "nl-NL":
        return f"€ {_group(integer, '.')},{cents}"
    return f"{_group(integer, ' ')},{cents} kr"  # sv-SE


BASE_URL_IMAGE_SHARE = 0.3


def image_urls(
    rng: random.Random, product: MadeProduct, base_url: str | None, domain: str
) -> list[str]:
    if base_url:
        # Local image server (demo, tests): like real feeds, only some products have one.
        if rng.random() >= BASE_URL_IMAGE_SHARE:
            return []
        urls = [f"{base_url.rstrip('/')}/img/{product.ordinal}.jpg"]
    else:
        count = rng.choice([1, 1, 2, 3])
        urls = [f"https://cdn.{domain}/images/{product.product_id}/{i}.jpg" for i in range(count)]
        if rng.random() < 0.05:
            urls[0] = urls[0].replace("https:", "", 1)  # protocol-relative
        elif rng.random() < 0.1:
            urls[0] = urls[0].replace("https:", "http:", 1)
    if rng.random() < 0.05:
        urls.append(urls[0])  # the same image twice
    if rng.random() < 0.02:
        urls.append(rng.choice(["ftp://images.example/a.jpg", "javascript:void(0)"]))
    return urls


def updated_at(rng: random.Random, row_index: int, as_epoch: bool) -> str | int:
    moment = BASE_TIME + timedelta(minutes=row_index, seconds=rng.randrange(60))
    if as_epoch:
        return int(moment.timestamp() * 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_product(rng: random.Random, product: MadeProduct, base_url: str | None) -> None:
    """Fill ``product.fields`` with messy, plausible values."""
    language, currency = words.LOCALES[product.locale]
    top = product.category_path[0]
    product.noun = leaf_noun(rng, product.category_path[-1], language)
    apparel = top == "Apparel & Accessories"
    gender = rng.choice(["female", "male", "unisex"]) if apparel and rng.random() < 0.8 else None
    product.fields["_gender"] = gender
    brand = _brand(rng, top)
    colour = rng.choice(words.COLOURS[language])
    title = make_title(rng, product, brand, colour)
    merchant, domain = rng.choice(words.MERCHANTS)
    amount = _amount(rng)
    fields: dict[str, Any] = {
        "product_id": product.product_id,
        "title": messy_title(rng, title, brand),
        "description": make_description(rng, product, title, colour),
        "brand": brand,
        "raw_category": raw_category(rng, product.category_path),
        "price": price_text(rng, amount, product.locale),
        "currency": currency if rng.random() < 0.8 else "",
        "image_urls": image_urls(rng, product, base_url, domain),
        "url": f"https://www.{domain}/p/{product.product_id}?utm_source=affiliate&amp;ref=feed",
        "merchant": merchant,
        "colour": colour if rng.random() < 0.7 else "",
        "gender": rng.choice(words.GENDER_VALUES[gender]) if gender else "",
        "size": rng.choice(words.SIZES) if apparel and rng.random() < 0.7 else "",
        "_amount": amount,
        "_brand": brand,
        "_colour": colour,
    }
    for optional in ("description", "brand", "raw_category", "colour", "image_urls"):
        if rng.random() < 0.05:
            fields[optional] = [] if optional == "image_urls" else ""
    fields.pop("_gender", None)
    product.fields = fields
