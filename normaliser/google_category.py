"""A feed's ``google_product_category``: a Google taxonomy id or path → the category.

Feeds send it as a numeric id (``"2271"``, ``2271``), a path (``"Apparel &
Accessories > Clothing > Dresses"``, sometimes HTML-escaped as ``&gt;``), or
``"2271 - Apparel & Accessories > ..."``. The feed mappings leave the column
unclaimed, so it arrives in ``extra`` under the feed's own spelling
(``google_product_category``, ``g:google_product_category``, ...).
``google_category`` finds and resolves it against the Google taxonomy bundled in
``catstream/data`` (or a given taxonomy); unknown values resolve to None.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import catstream
from catstream.taxonomy import Taxonomy, load_taxonomy

GOOGLE_TAXONOMY = (
    Path(catstream.__file__).resolve().parent / "data" / ("google_product_taxonomy.en-US.txt")
)
FIELD = "google_product_category"
_KEY_NOISE = re.compile(r"[\s.:\-/]+")
_ID_AND_PATH = re.compile(r"^\s*(\d+)\s*-\s*(\S.*)$")


def _key(name: str) -> str:
    return _KEY_NOISE.sub("_", name.strip().lower().removeprefix("g:")).strip("_")


def google_category_value(extra: Mapping[str, Any]) -> str | int | None:
    """The raw ``google_product_category`` value of a product's ``extra``, if any."""
    for name, value in extra.items():
        if _key(str(name)) == FIELD and value not in (None, ""):
            if isinstance(value, bool) or not isinstance(value, str | int):
                return None
            return value
    return None


def resolve_google_category(value: str | int, taxonomy: Taxonomy | None = None) -> int | None:
    """The category id ``value`` names in ``taxonomy`` (default: Google's), or None."""
    taxonomy = taxonomy or load_taxonomy(GOOGLE_TAXONOMY)
    if isinstance(value, int):
        return value if value in taxonomy else None
    text = html.unescape(value).strip()
    if text.isdigit():
        return int(text) if int(text) in taxonomy else None
    match = _ID_AND_PATH.match(text)
    if match and int(match.group(1)) in taxonomy:
        return int(match.group(1))
    return taxonomy.find_path(text)


def google_category(extra: Mapping[str, Any], taxonomy: Taxonomy | None = None) -> int | None:
    """The product's ``google_product_category`` as a category id of ``taxonomy``, or None."""
    value = google_category_value(extra)
    return None if value is None else resolve_google_category(value, taxonomy)


def google_category_path(extra: Mapping[str, Any]) -> str:
    """The Google path of the product's ``google_product_category`` ("" when absent/unknown)."""
    value = google_category_value(extra)
    if value is None:
        # Most products: no taxonomy lookup (load_taxonomy resolves and stats the file).
        return ""
    taxonomy = load_taxonomy(GOOGLE_TAXONOMY)
    category = resolve_google_category(value, taxonomy)
    return "" if category is None else taxonomy.path_str(category)


def google_category_in(extra: Mapping[str, Any], taxonomy: Taxonomy) -> int | None:
    """The category of ``taxonomy`` the product's ``google_product_category`` names, or None.

    The value is read as Google's (an id or a path); its Google path is then looked
    up in ``taxonomy``, so this works for the Google taxonomy and for any
    taxonomy that shares its paths.
    """
    path = google_category_path(extra)
    if path:
        return taxonomy.find_path(path)
    value = google_category_value(extra)
    if isinstance(value, str) and not value.strip().isdigit():
        return taxonomy.find_path(html.unescape(value))
    return None
