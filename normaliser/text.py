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
_MAX_ROUNDS = 8
_TRADEMARKS = re.compile("[™℠®]")
# Characters dropped: Unicode categories Cc (control), Cf (format: zero-width space,
# BOM, soft hyphen, bidi marks), Cs (lone surrogates from undecodable input) and Co
# (private use), as of Unicode 14 (Python 3.11), listed as ranges because a
# per-character category lookup is ten times slower; plus emoji and the variation
# selectors that style them (no category signal, and they break tokenisers).
_DROPPED_RANGES = (
    # Controls, except the whitespace ones (\t \n \v \f \r, 0x1C-0x1F, 0x85): those
    # separate words and are collapsed into one space later.
    (0x0, 0x8),
    (0xE, 0x1B),
    (0x7F, 0x84),
    (0x86, 0x9F),
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xD800, 0xF8FF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xF0000, 0xFFFFD),
    (0x100000, 0x10FFFD),
    # emoji and pictographs, dingbats and symbols, variation selectors, flags
    (0x1F000, 0x1FAFF),
    (0x2600, 0x27BF),
    (0xFE00, 0xFE0F),
    (0x1F1E6, 0x1F1FF),
)
_DROPPED = re.compile("[" + "".join(f"\\U{a:08X}-\\U{b:08X}" for a, b in _DROPPED_RANGES) + "]")


def _drop_unwanted_chars(text: str) -> str:
    return _DROPPED.sub("", text)


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
    text = unicodedata.normalize("NFKC", _TRADEMARKS.sub("", text))
    text = _drop_unwanted_chars(text)
    text = _strip_markup(text)
    # Entities can decode into control characters ("&#7;") or emoji.
    text = _drop_unwanted_chars(text)
    text = _WHITESPACE.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text


def _may_change_again(text: str) -> bool:
    # One pass leaves work only where decoding created it: an entity or tag that
    # decoded into markup, a trademark sign, or a character NFKC would rewrite.
    return (
        "&" in text
        or "<" in text
        or not unicodedata.is_normalized("NFKC", text)
        or any(mark in text for mark in "™℠®")
    )


def _fixpoint(text: str, max_chars: int | None) -> str:
    for _ in range(_MAX_ROUNDS):
        cleaned = _one_pass(text, max_chars)
        if cleaned == text or not _may_change_again(cleaned):
            return cleaned
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
