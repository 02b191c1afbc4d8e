"""Brand names → one canonical spelling, so ``NIKE``, ``nike `` and ``Nike™`` group.

Rules (on already text-cleaned input): trademark signs go; placeholder brands
(``unbranded``, ``n/a``, ``-``) become None; a brand written all in capitals or
all in lower case is re-cased to capitalised words, keeping short all-capital
words as acronyms (``H&M``, ``BMW``, ``THE NORTH FACE`` → ``The North Face``);
mixed case (``iPhone``, ``adidas Originals``, ``McQ``) is the owner's spelling and
stays. Idempotent by construction. Pure: no I/O.
"""

from __future__ import annotations

import re

_MARKS = re.compile(r"[™®©℠]|\((?:tm|r|c)\)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_PLACEHOLDERS = frozenset(
    {
        "",
        "-",
        "--",
        "n/a",
        "na",
        "none",
        "null",
        "unbranded",
        "no brand",
        "generic",
        "unknown",
        "various",
        "sans marque",
        "ohne marke",
        "keine marke",
        "sin marca",
        "geen merk",
    }
)
_SMALL_WORDS = frozenset({"and", "of", "the", "for", "de", "la", "le", "du", "von", "van"})
_ACRONYM_MAX = 3


def _recase_word(match: re.Match[str], all_upper: bool, first: bool) -> str:
    word = match.group(0)
    if all_upper and len(word) <= _ACRONYM_MAX and word.lower() not in _SMALL_WORDS:
        return word
    if not first and word.lower() in _SMALL_WORDS:
        return word.lower()
    return word[:1].upper() + word[1:].lower()


def canonical_brand(text: str | None) -> str | None:
    """Canonical brand for grouping, or None for a missing/placeholder brand."""
    if text is None:
        return None
    brand = _SPACES.sub(" ", _MARKS.sub("", text)).strip(" .,;:-")
    if brand.casefold() in _PLACEHOLDERS:
        return None
    if not (brand.isupper() or brand.islower()):
        return brand
    all_upper = brand.isupper()
    first_word_start = next((m.start() for m in _WORD.finditer(brand)), 0)
    return _WORD.sub(lambda m: _recase_word(m, all_upper, m.start() == first_word_start), brand)
