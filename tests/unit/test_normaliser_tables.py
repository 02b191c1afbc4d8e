"""Table tests: real-looking messy feed values and what the normaliser makes of them."""

from __future__ import annotations

import pytest

from normaliser.brand import canonical_brand
from normaliser.category_path import split_category
from normaliser.images import clean_image_urls
from normaliser.price import clean_currency, parse_price
from normaliser.text import clean_text, clean_text_checked
from normaliser.vocabulary import canonical_gender, canonical_size


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Home & Garden > Kitchen & Dining > Kitchen Tools",
            ["Home & Garden", "Kitchen & Dining", "Kitchen Tools"],
        ),
        ("home/garden/kitchen", ["Home", "Garden", "Kitchen"]),
        ("Apparel & Accessories/Clothing", ["Apparel & Accessories", "Clothing"]),
        ("Women / T-Shirts/Tops", ["Women", "T-Shirts/Tops"]),
        ("T-Shirts/Tops", ["T-Shirts/Tops"]),
        ("CD/DVD Cases & Organizers", ["CD/DVD Cases & Organizers"]),
        ("Electronics/I/O Cards", ["Electronics", "I/O Cards"]),
        ("HOME | GARDEN | lawn & garden", ["Home", "Garden", "Lawn & Garden"]),
        ("Home » Garden »", ["Home", "Garden"]),
        ("Home >> Garden", ["Home", "Garden"]),
        ("Electronics // Audio // Headphones", ["Electronics", "Audio", "Headphones"]),
        ("Sports\\Outdoor\\Camping", ["Sports", "Outdoor", "Camping"]),
        ("Toys; Games; Puzzles", ["Toys", "Games", "Puzzles"]),
        ("Clothing, Shoes", ["Clothing", "Shoes"]),
        (
            "Vehicles & Parts, Vehicles, Motor Vehicles, Cars, Trucks & Vans",
            ["Vehicles & Parts", "Vehicles", "Motor Vehicles", "Cars, Trucks & Vans"],
        ),
        ("Cars, Trucks & Vans", ["Cars, Trucks & Vans"]),
        (
            "Arts & Entertainment > Posters, Prints, & Visual Artwork",
            ["Arts & Entertainment", "Posters, Prints, & Visual Artwork"],
        ),
        ("men's t-shirts and tops", ["Men's T-Shirts and Tops"]),
        ("-> Mode -> Damen -> Schuhe", ["Mode", "Damen", "Schuhe"]),
        ("Maison > Cuisine › Ustensiles", ["Maison", "Cuisine", "Ustensiles"]),
        ("adidas Originals > Sneakers", ["adidas Originals", "Sneakers"]),
        ("Home >  > Garden", ["Home", "Garden"]),
        ("", []),
        (None, []),
    ],
)
def test_category_paths(raw: str | None, expected: list[str]) -> None:
    assert expected == split_category(clean_text(raw))


@pytest.mark.parametrize(
    ("text", "currency", "locale", "amount", "code"),
    [
        # en-GB
        ("£1,299.00", None, "en-GB", "1299.00", "GBP"),
        ("12.99 GBP", None, None, "12.99", "GBP"),
        ("£12", None, None, "12.00", "GBP"),
        # de-DE
        ("1.299,00 EUR", None, "de-DE", "1299.00", "EUR"),
        ("1.299,00 €", None, None, "1299.00", "EUR"),
        ("ab 12,99 €", None, "de-DE", "12.99", "EUR"),
        ("1.299", "EUR", None, "1299.00", "EUR"),  # lone 3-digit group: EUR reads thousands
        # fr-FR: narrow no-break space as the thousands separator
        ("1\u202f299,00 €", None, "fr-FR", "1299.00", "EUR"),
        ("1 299,00 EUR", None, "fr-FR", "1299.00", "EUR"),
        ("€ 12,50", None, None, "12.50", "EUR"),
        # en-US
        ("$1,299.00", None, "en-US", "1299.00", "USD"),
        ("USD 1 299.00", None, None, "1299.00", "USD"),
        ("1,299", "USD", None, "1299.00", "USD"),
        ("12.500", "USD", None, "12.50", "USD"),  # a 3-decimal export, not twelve thousand
        ("12", None, None, "12.00", None),
        ("$19.99", "CAD", None, "19.99", "CAD"),  # '$' is shared; the column decides
        # nl-NL
        ("€ 1.299,00", None, "nl-NL", "1299.00", "EUR"),
        ("€1.299", None, "nl-NL", "1299.00", "EUR"),
        # sv-SE
        ("1 299,00 kr", "SEK", "sv-SE", "1299.00", "SEK"),
        ("SEK 1 299", None, None, "1299.00", "SEK"),
        ("1.299", None, "sv-SE", "1299.00", None),
        # de-CH
        ("CHF 1'299.50", None, None, "1299.50", "CHF"),
        # many groups
        ("1.234.567,89 €", None, None, "1234567.89", "EUR"),
        ("1,234,567.89", "USD", None, "1234567.89", "USD"),
        ("EUR12.50", None, None, "12.50", "EUR"),
        ("9,99€", None, None, "9.99", "EUR"),
        ("12.345", None, None, "12.35", None),  # no hint: a point is a decimal point
    ],
)
def test_prices_across_locales(
    text: str, currency: str | None, locale: str | None, amount: str, code: str | None
) -> None:
    parsed = parse_price(text, currency, locale)
    assert (amount, code, []) == (parsed.amount, parsed.currency, parsed.warnings)


@pytest.mark.parametrize(
    ("value", "warning_prefix"),
    [
        ("Free", "price_unparsable"),
        ("£12.99 £9.99", "price_unparsable"),
        ("call for price", "price_unparsable"),
        ("-5", "price_negative"),
        ("99999999999", "price_too_large"),
        (float("nan"), "price_unparsable"),
    ],
)
def test_unparsable_prices_become_none_with_a_warning(
    value: str | float, warning_prefix: str
) -> None:
    parsed = parse_price(value)
    assert parsed.amount is None
    assert [w.split(":")[0] for w in parsed.warnings] == [warning_prefix]


def test_empty_price_is_none_without_a_warning() -> None:
    assert (parse_price("").amount, parse_price("").warnings) == (None, [])


def test_numeric_prices() -> None:
    assert parse_price(12.5).amount == "12.50"
    assert parse_price(3).amount == "3.00"


def test_explicit_currency_in_the_text_beats_the_column_and_warns() -> None:
    parsed = parse_price("19,99 €", "GBP")
    assert (parsed.amount, parsed.currency) == ("19.99", "EUR")
    assert parsed.warnings == ["currency_conflict: column GBP, price text EUR"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("eur", "EUR"), (" GBP ", "GBP"), ("€", "EUR"), ("zł", "PLN"), ("", None), (None, None)],
)
def test_currency_column(value: str | None, expected: str | None) -> None:
    assert (expected, []) == clean_currency(value)


def test_unknown_currency_warns() -> None:
    assert clean_currency("Euros") == (None, ["currency_unknown: 'Euros'"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "<p>Soft&amp;amp;nbsp;<b>cotton</b></p><ul><li>Red</li><li>Blue</li></ul>",
            "Soft cotton Red Blue",
        ),
        ("size < 10 > 5", "size < 10 > 5"),
        ("&lt;b&gt;Bold&lt;/b&gt; claim", "Bold claim"),
        ("🔥 SALE\u200b Nike\x00 Shoes 🔥  ", "SALE Nike Shoes"),
        ("ＮＩＫＥ\u3000Ａｉｒ", "NIKE Air"),
        ("caf\u00e9 &eacute;t&eacute;", "café été"),
        ("Tom &amp; Jerry\r\n\tmug", "Tom & Jerry mug"),
        ("<!-- promo --> Lamp", "Lamp"),
        ("   ", None),
        ("<br/>", None),
    ],
)
def test_clean_text(raw: str, expected: str | None) -> None:
    assert expected == clean_text(raw)


def test_clean_text_caps_length_and_says_so() -> None:
    assert clean_text_checked("ab  cd", max_chars=3) == ("ab", True)
    assert clean_text_checked("ab  cd", max_chars=5) == ("ab cd", False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NIKE", "Nike"),
        ("nike", "Nike"),
        ("Nike™", "Nike"),
        ("H&M", "H&M"),
        ("THE NORTH FACE", "The North Face"),
        ("adidas Originals", "adidas Originals"),
        ("LEVI'S", "Levi's"),
        ("BMW", "BMW"),
        ("dr. martens", "Dr. Martens"),
        ("unbranded", None),
        ("N/A", None),
        (None, None),
    ],
)
def test_brands(raw: str | None, expected: str | None) -> None:
    assert expected == canonical_brand(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Damen", "female"),
        ("women's", "female"),
        ("F", "female"),
        ("MENS", "male"),
        ("Homme", "male"),
        ("Unisex", "unisex"),
        ("kids", "unisex"),
        (None, None),
    ],
)
def test_genders(raw: str | None, expected: str | None) -> None:
    assert (expected, []) == canonical_gender(raw)


def test_unknown_gender_warns() -> None:
    assert canonical_gender("robot") == (None, ["gender_unrecognised: 'robot'"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("x-large", "XL"),
        ("2XL", "XXL"),
        ("small", "S"),
        ("Size: M", "M"),
        ("Einheitsgröße", "One Size"),
        ("EU 42", "EU 42"),
        ("32W 34L", "32W 34L"),
        (None, None),
    ],
)
def test_sizes(raw: str | None, expected: str | None) -> None:
    assert expected == canonical_size(raw)


def test_image_urls_http_only_deduplicated_in_order() -> None:
    urls, warnings = clean_image_urls(
        [
            "//cdn.x.com/a.jpg https://cdn.x.com/a.jpg|http://y.com/b.png",
            "ftp://x/y",
            "javascript:alert(1)",
            "https://cdn.x.com/a.jpg",
            "data:image/png;base64,AA",
        ]
    )
    assert urls == ["https://cdn.x.com/a.jpg", "http://y.com/b.png"]
    assert warnings == ["image_urls_dropped: 3 not http(s)"]


def test_shared_symbols_defer_to_the_column_but_codes_do_not() -> None:
    assert parse_price("$19.99", "CAD").currency == "CAD"
    assert parse_price("1 299,00 SEK", "EUR").currency == "SEK"
    assert parse_price("1 299,00 kr", "NOK").currency == "NOK"


@pytest.mark.parametrize(
    ("value", "warning"),
    [
        (10**5000, "price_too_large: an integer of about 5,001 digits"),
        (-(10**5000), "price_negative"),
        (10**12, "price_too_large: an integer of about 13 digits"),
    ],
    ids=["5000-digits", "minus-5000-digits", "13-digits"],
)
def test_a_huge_integer_price_is_a_warning_not_a_crash(value: int, warning: str) -> None:
    # Before: str() of an int over 4,300 digits raised ValueError inside the normaliser.
    parsed = parse_price(value, "EUR")
    assert parsed.amount is None
    assert parsed.warnings[0].startswith(warning)
