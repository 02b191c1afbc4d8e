"""Merchant category strings → a list of path segments.

Feeds write one category path many ways: ``Home & Garden > Kitchen``,
``home/garden/kitchen``, ``HOME | GARDEN``, ``Home » Garden``, ``Home, Garden``.
``split_category`` picks the delimiter the string actually uses, in this order:

1. *strong* delimiters, which never occur inside a category name: ``>``, ``>>``,
   ``->``, ``»``, ``›``, ``→``, ``|``, ``\\``, ``;``, ``//``, ``::`` (all of them at once);
2. a slash with whitespace beside it (``Women / Shoes``);
3. bare slashes, when the string is clearly a path (two or more slashes, or a
   segment with spaces, e.g. ``Apparel & Accessories/Clothing``). A single slash
   between single words (``T-Shirts/Tops``) and short tokens (``CD/DVD``, ``I/O``,
   ``A/V``) are part of a name;
4. commas, except where they belong to a category name (``Cars, Trucks & Vans``;
   Google names lists as ``A, B & C``).

A segment written all in upper or all in lower case is re-cased to capitalised
words (``T-SHIRTS & TOPS`` → ``T-Shirts & Tops``); mixed case is the merchant's
choice and kept. Pure: no I/O.
"""

from __future__ import annotations

import re

MAX_SEGMENTS = 12
MAX_SEGMENT_CHARS = 200

_STRONG = re.compile(r"\s*(?:>>|->|=>|//|::|[>»›→|\\;])\s*")
_SPACED_SLASH = re.compile(r"\s+/\s*|\s*/\s+")
# "CD/DVD", "I/O", "A/V", "2/3": short tokens around a slash name one thing.
_SHORT_TOKEN_SLASH = re.compile(r"(?<![\w-])(\w{1,3})/(\w{1,3})(?![\w-])")
_SLASH_MASK = "\x00"
_COMMA = re.compile(r"\s*,\s*")
_SMALL_WORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "in",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "&",
        "+",
    }
)

# Taxonomy category names that contain a comma (Google product taxonomy); a comma
# split that cuts one of these apart is undone.
COMMA_NAMES = frozenset(
    {
        "arm chairs, recliners & sleeper chairs",
        "armatures, rotors & stators",
        "calendars, organizers & planners",
        "cars, trucks & vans",
        "cement, mortar & concrete mixes",
        "chain, wire & rope",
        "cooktop, oven & range accessories",
        "correction fluids, pens & tapes",
        "craft paint, ink & glaze",
        "dance dresses, skirts & costumes",
        "dolls, playsets & toy figures",
        "financial, tax & accounting software",
        "flood, fire & gas safety",
        "food, beverages & tobacco",
        "frames, hoops & stretchers",
        "garden arches, trellises, arbors & pergolas",
        "gardening scooters, seats & kneelers",
        "grains, rice & cereal",
        "hair pins, claws & clips",
        "handbags, wallets & cases",
        "heating, ventilation & air conditioning",
        "hoists, cranes & trolleys",
        "hooks, buckles & fasteners",
        "horse grooming combs, brushes & mitts",
        "laminating film, pouches & sheets",
        "lifting hooks, clamps & shackles",
        "meat, seafood & eggs",
        "needle, pin & hook organizers",
        "oats, grits & hot cereal",
        "pet bowls, feeders & waterers",
        "pool ladders, steps & ramps",
        "pool, fountain & pond pumps",
        "posters, prints, & visual artwork",
        "print trays, washers & dryers",
        "print, copy, scan & fax",
        "printer, copier & fax machine accessories",
        "printer, copier & fax machine replacement parts",
        "printer, copier, & fax machine circuit boards",
        "printers, copiers & fax machines",
        "pulleys, blocks & sheaves",
        "sheds, garages & carports",
        "solvents, strippers & thinners",
        "speaker bags, covers & cases",
        "sprinkler, booster & irrigation system pumps",
        "sump, sewage & effluent pumps",
        "thread, yarn & bobbin winders",
        "tofu, soy & vegetarian products",
        "vehicle maintenance, care & decor",
        "vehicle waxes, polishes & protectants",
        "wetsuit hoods, gloves & boots",
        "wildlife bait, feed & minerals",
        "wire partitions, enclosures & doors",
    }
)


def _recase_segment(segment: str) -> str:
    letters = [c for c in segment if c.isalpha()]
    if not letters or not (segment.islower() or segment.isupper()):
        return segment
    words = segment.lower().split(" ")
    out = []
    for index, word in enumerate(words):
        if index > 0 and word in _SMALL_WORDS:
            out.append(word)
        else:
            out.append("-".join(part[:1].upper() + part[1:] for part in word.split("-")))
    return " ".join(out)


def _merge_comma_names(pieces: list[str]) -> list[str]:
    merged: list[str] = []
    index = 0
    while index < len(pieces):
        # Longest run of pieces that together form a known comma name.
        for end in range(len(pieces), index, -1):
            candidate = ", ".join(pieces[index:end])
            if end - index == 1 or candidate.casefold() in COMMA_NAMES:
                merged.append(candidate)
                index = end
                break
    # "Posters, Prints, & Visual Artwork": a piece starting with "&"/"and" ends a list.
    result: list[str] = []
    for piece in merged:
        lowered = piece.casefold()
        if result and (lowered.startswith("& ") or lowered.startswith("and ")):
            result[-1] = f"{result[-1]}, {piece}"
        else:
            result.append(piece)
    return result


def _split_slashes(text: str) -> list[str] | None:
    masked = _SHORT_TOKEN_SLASH.sub(rf"\1{_SLASH_MASK}\2", text)
    if "/" not in masked:
        return None
    pieces = masked.split("/")
    if len(pieces) < 3 and not any(" " in p.strip() for p in pieces):
        return None  # "T-Shirts/Tops": one name
    return [p.replace(_SLASH_MASK, "/") for p in pieces]


def _raw_pieces(text: str) -> list[str]:
    if _STRONG.search(text):
        return _STRONG.split(text)
    if _SPACED_SLASH.search(text):
        return _SPACED_SLASH.split(text)
    slash_pieces = _split_slashes(text)
    if slash_pieces is not None:
        return slash_pieces
    if "," in text:
        return _merge_comma_names([p for p in _COMMA.split(text) if p.strip()])
    return [text]


def split_category(text: str | None) -> list[str]:
    """The path segments of an (already text-cleaned) category string, root first."""
    if not text:
        return []
    segments: list[str] = []
    for piece in _raw_pieces(text):
        segment = piece.strip(" \t-–—.:").strip()
        if not segment:
            continue
        segments.append(_recase_segment(segment)[:MAX_SEGMENT_CHARS].rstrip())
        if len(segments) == MAX_SEGMENTS:
            break
    return segments
