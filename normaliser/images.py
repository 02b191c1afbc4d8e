"""Image and product URLs: http(s) only, trimmed, de-duplicated in feed order.

Feeds send ``//cdn.x/a.jpg`` (protocol-relative: read as https), several URLs in
one cell separated by spaces or ``|``, the same image twice, and non-web schemes
(``ftp:``, ``data:``, ``javascript:``) that an image fetcher must never follow.
Pure: no I/O.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MAX_IMAGES = 20
MAX_URL_CHARS = 2048
_SEPARATORS = re.compile(r"[\s|]+")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def clean_url(value: object) -> str | None:
    """An absolute http(s) URL, or None."""
    if not isinstance(value, str):
        return None
    url = html.unescape(value.strip())
    if url.startswith("//"):
        url = "https:" + url
    if not url or len(url) > MAX_URL_CHARS or _CONTROL_OR_SPACE.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


def clean_image_urls(values: Iterable[object]) -> tuple[list[str], list[str]]:
    """(http(s) image URLs, deduplicated in order, at most MAX_IMAGES; warnings)."""
    kept: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for value in values:
        if not isinstance(value, str):
            dropped += 1
            continue
        for candidate in _SEPARATORS.split(value):
            if not candidate:
                continue
            url = clean_url(candidate)
            if url is None:
                dropped += 1
            elif url not in seen and len(kept) < MAX_IMAGES:
                seen.add(url)
                kept.append(url)
    warnings = [f"image_urls_dropped: {dropped} not http(s)"] if dropped else []
    return kept, warnings
