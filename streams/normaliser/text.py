"""Free-text cleaning shared by every text field.

``clean_text`` strips HTML tags, decodes entities (repeatedly: feeds double-encode
``&amp;amp;``), applies Unicode NFKC, drops control/format characters and emoji,
collapses whitespace and caps the length. It is idempotent:
``clean_text(clean_text(x)) == clean_text(x)``, which the normaliser's own
idempotency rests on. Pure: no I/O.
"""

from __future__ import annotations

import html
import re
import unicodedata

# Only tag-like text is markup: "<b>", "</p>", "<br/>", "<!-- x -->". A bare "<" as in
# "size < 10" is content and stays.
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
# Block-level tags separate words: "<li>Red</li><li>Blue</li>" must not become "RedBlue".
_BLOCK_TAG = re.compile(
    r"</?(?:p|br|li|ul|ol|div|tr|td|th|h[1-6]|table|section|article|dd|dt)\b[^<>]*>",
    re.IGNORECASE,
)
_WHITESPACE = re.compile(r"\s+")
# Categories dropped: Cc control, Cf format (zero-width, BOM, soft hyphen),
# Cs lone surrogates (undecodable input), Co private use.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
_MAX_ROUNDS = 8
_TRADEMARKS = {ord(c): None for c in "™℠®"}


def _is_emoji(char: str) -> bool:
    # Pictographs carry no category signal and break tokenisers; "So" in the
    # emoji blocks, plus the variation selectors that style them.
    code = ord(char)
    return (
        0x1F000 <= code <= 0x1FAFF
        or 0x2600 <= code <= 0x27BF
        or 0xFE00 <= code <= 0xFE0F
        or 0x1F1E6 <= code <= 0x1F1FF
    )


_ASCII_CONTROLS = {
    code: (" " if chr(code) in "\t\n\r\x0b\x0c" else None) for code in [*range(32), 127]
}


def _drop_unwanted_chars(text: str) -> str:
    text = text.translate(_ASCII_CONTROLS)  # whitespace controls become spaces
    if text.isascii():
        return text
    return "".join(
        char
        for char in text
        if not (unicodedata.category(char) in _DROPPED_CATEGORIES or _is_emoji(char))
    )


def _strip_markup(text: str) -> str:
    # Decode and strip until nothing changes: "&lt;b&gt;" decodes into a tag that
    # must go too, and "&amp;amp;" needs two decodes.
    for _ in range(_MAX_ROUNDS):
        before = text
        if "<" in text:
            text = _BLOCK_TAG.sub(" ", text)
            text = _TAG.sub("", text)
        if "&" in text:
            text = html.unescape(text)
        if text == before:
            break
    return text


def _one_pass(text: str, max_chars: int | None) -> str:
    # Trademark signs are noise, and NFKC would turn "Nike™" into "NikeTM".
    text = unicodedata.normalize("NFKC", text.translate(_TRADEMARKS))
    text = _drop_unwanted_chars(text)
    text = _strip_markup(text)
    # Entities can decode into control characters ("&#7;") or emoji.
    text = _drop_unwanted_chars(text)
    text = _WHITESPACE.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text


def _fixpoint(text: str, max_chars: int | None) -> str:
    for _ in range(_MAX_ROUNDS):
        cleaned = _one_pass(text, max_chars)
        if cleaned == text:
            break
        text = cleaned
    return text


def clean_text_checked(value: object, max_chars: int = 5000) -> tuple[str | None, bool]:
    """(cleaned text or None when nothing is left, whether it was cut to ``max_chars``)."""
    if value is None:
        return None, False
    text = _fixpoint(value if isinstance(value, str) else str(value), None)
    if len(text) <= max_chars:
        return text or None, False
    return _fixpoint(text[:max_chars], max_chars) or None, True


def clean_text(value: object, max_chars: int = 5000) -> str | None:
    """Cleaned text, or None when nothing is left (empty, only markup or whitespace)."""
    return clean_text_checked(value, max_chars)[0]
