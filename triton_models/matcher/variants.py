"""Variants: two offers of one model that are not the same product (size, colour, capacity).

The pair model may score "iPhone 15 128GB" against "iPhone 15 256GB" high: the
titles share everything else. A *conflicting* pair is never an accepted match,
and the grouping never puts its two products in one offer group, even through
other products (``streams.offer_groups``). A pair conflicts when:

- their number+unit tokens disagree (same unit, no shared value: 128GB/256GB,
  20 cm/24 cm), or
- both feeds give a size (or a colour) and they differ, or
- both titles name colours and no colour is shared.
"""

from __future__ import annotations

from triton_models.matcher.features import MatchRecord, fold, number_units, words

COLOURS = frozenset(
    "black white red blue green yellow orange purple pink brown grey gray silver gold "
    "beige navy teal turquoise burgundy maroon ivory cream khaki olive violet "
    "rose bronze copper charcoal lime mint coral".split()
)
_GRAY = {"gray": "grey"}


def colours(text: str) -> set[str]:
    return {_GRAY.get(w, w) for w in words(text) if w in COLOURS}


def _differ(a: str | None, b: str | None) -> bool:
    return bool(a and b) and fold(a) != fold(b)


def conflict_reason(a: MatchRecord, b: MatchRecord) -> str | None:
    """Why ``a`` and ``b`` are variants of each other, or None when nothing says so."""
    units_a, units_b = number_units(a.title), number_units(b.title)
    for unit in units_a.keys() & units_b.keys():
        if not units_a[unit] & units_b[unit]:
            return f"{unit} differs"
    if _differ(a.size, b.size):
        return "size differs"
    if _differ(a.colour, b.colour):
        return "colour differs"
    title_a, title_b = colours(a.title), colours(b.title)
    if title_a and title_b and not title_a & title_b:
        return "colour differs"
    return None
