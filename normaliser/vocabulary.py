"""Small canonical vocabularies for ``gender`` and ``size``.

Feeds spell these in many languages and styles (``Damen``, ``women's``, ``F``;
``x-large``, ``2XL``, ``Einheitsgröße``). Gender maps onto ``female``, ``male`` or
``unisex`` (Google Merchant's values), unknown values become None with a warning.
Letter sizes map onto ``XXS`` … ``5XL`` and ``One Size``; any other size (``42``,
``EU 42``, ``32W 34L``) is kept as cleaned text, since sizes are open-ended. The
raw value always survives in the event's ``raw`` field. Pure: no I/O.
"""

from __future__ import annotations

import re

GENDERS = ("female", "male", "unisex")

_GENDER_WORDS: dict[str, str] = {}
for _canonical, _words in {
    "female": "female f w woman women womens women's womenswear ladies lady ladies' girl girls "
    "girl's girls' damen dame frauen femme femmes mujer mujeres dames vrouwen dam kvinna "
    "donna donne kvinder damer",
    "male": "male m man men mens men's menswear gentlemen boy boys boy's boys' herren herr "
    "männer homme hommes hombre hombres heren mannen herr herrar uomo uomini man's",
    "unisex": "unisex uni both all adult adults kids kid children child baby babies "
    "unisexe unisexo neutral everyone",
}.items():
    for _word in _words.split():
        _GENDER_WORDS[_word] = _canonical

_LETTER_SIZES: dict[str, str] = {
    "xxs": "XXS",
    "2xs": "XXS",
    "xx-small": "XXS",
    "extra extra small": "XXS",
    "xs": "XS",
    "x-small": "XS",
    "extra small": "XS",
    "xsmall": "XS",
    "s": "S",
    "sm": "S",
    "small": "S",
    "klein": "S",
    "petit": "S",
    "m": "M",
    "md": "M",
    "med": "M",
    "medium": "M",
    "mittel": "M",
    "moyen": "M",
    "l": "L",
    "lg": "L",
    "large": "L",
    "groß": "L",
    "gross": "L",
    "grand": "L",
    "xl": "XL",
    "x-large": "XL",
    "extra large": "XL",
    "xlarge": "XL",
    "1xl": "XL",
    "xxl": "XXL",
    "2xl": "XXL",
    "xx-large": "XXL",
    "xxlarge": "XXL",
    "extra extra large": "XXL",
    "xxxl": "3XL",
    "3xl": "3XL",
    "xxx-large": "3XL",
    "xxxxl": "4XL",
    "4xl": "4XL",
    "5xl": "5XL",
    "one size": "One Size",
    "onesize": "One Size",
    "one-size": "One Size",
    "os": "One Size",
    "o/s": "One Size",
    "one size fits all": "One Size",
    "osfa": "One Size",
    "einheitsgröße": "One Size",
    "einheitsgrösse": "One Size",
    "taille unique": "One Size",
    "talla única": "One Size",
    "talla unica": "One Size",
    "one-size-fits-all": "One Size",
    "onze maat": "One Size",
    "en storlek": "One Size",
}
_SIZE_PREFIX = re.compile(
    r"^(?:size|größe|grösse|taille|talla|maat|storlek)\s*[:.]?\s*", re.IGNORECASE
)


def canonical_gender(text: str | None) -> tuple[str | None, list[str]]:
    """(``female``/``male``/``unisex`` or None, warnings) from a cleaned gender value."""
    if not text:
        return None, []
    key = text.casefold().strip(" .")
    canonical = _GENDER_WORDS.get(key)
    if canonical is None:
        return None, [f"gender_unrecognised: {text[:40]!r}"]
    return canonical, []


def canonical_size(text: str | None) -> str | None:
    """A canonical letter size, else the cleaned size text (None when empty)."""
    if not text:
        return None
    stripped = _SIZE_PREFIX.sub("", text).strip()
    canonical = _LETTER_SIZES.get(stripped.casefold())
    if canonical is not None:
        return canonical
    return stripped or text
