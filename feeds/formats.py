"""Streaming readers for affiliate feed files.

Every reader yields, in file order, either a ``FeedRow`` (the row's fields as a
dict and the line it starts on) or a ``ParseError`` (the line, a reason saying
what to fix, and for JSON lines the original bytes). A broken row never stops
the read: ingestion counts it and goes on.

Formats:

* ``csv`` / ``tsv``: a header row, then one record per row. CSV honours quotes
  (strictly: ``"abc"x`` is an error, not a guess); TSV takes quotes literally, as
  affiliate TSV exports do. A row with a different number of fields than the
  header, invalid UTF-8, or a quoted field running over ``MAX_RECORD_LINES`` lines
  (an unclosed quote) is an error.
* ``jsonl``: one JSON object per line. Lines that are not valid UTF-8 JSON
  objects are errors that keep their bytes: the publisher forwards them as they
  are, so the stream's dead-letter path sees real garbage.
* ``xml``: Google Merchant RSS/Atom, ``<item>``/``<entry>`` elements with ``g:``
  fields. Each item is parsed on its own, so one malformed item costs one row.
  Repeated elements (``g:additional_image_link``) become lists; nested ones
  (``g:shipping``) become dicts.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from xml.etree import ElementTree

FORMATS = ("csv", "tsv", "jsonl", "xml")
MAX_RECORD_LINES = 50
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".xml": "xml",
    ".rss": "xml",
    ".atom": "xml",
}
GOOGLE_NS = "http://base.google.com/ns/1.0"
_READ_BYTES = 1 << 20

csv.field_size_limit(min(sys.maxsize, 1 << 26))


class FeedFormatError(ValueError):
    """The feed as a whole cannot be read (unknown format, no header)."""


@dataclass(frozen=True, slots=True)
class FeedRow:
    line: int
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParseError:
    line: int
    reason: str
    raw: bytes | None = None  # set for JSON lines: forwarded as-is to the stream


FeedRecord = FeedRow | ParseError


def guess_format(path: Path | str) -> str:
    """The format named by the file extension (``.csv.gz`` is not supported)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise FeedFormatError(
            f"cannot tell the format of {path} from its extension; "
            f"pass --format with one of {', '.join(FORMATS)}"
        )
    return _EXTENSIONS[suffix]


def read_feed(path: Path | str, fmt: str | None = None) -> Iterator[FeedRecord]:
    """Rows and parse errors of a feed file, in order."""
    fmt = fmt or guess_format(path)
    if fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
            yield from read_delimited(text, "," if fmt == "csv" else "\t")
    elif fmt == "jsonl":
        with open(path, "rb") as binary:
            yield from read_jsonl(binary)
    elif fmt == "xml":
        with open(path, "rb") as binary:
            yield from read_xml(binary)
    else:
        raise FeedFormatError(f"unknown feed format {fmt!r}; use one of {', '.join(FORMATS)}")


# ------------------------------------------------------------------ csv / tsv


class _RecordTooLong(Exception):
    """Raised from inside the csv reader when one record spans too many lines."""


class _ReplayableLines:
    """Feeds a csv reader line by line, counting lines and remembering the current
    record's lines, so a broken record can be replayed from its second line: an
    unclosed quote then costs one row, not every row up to the next quote."""

    def __init__(self, lines: TextIO) -> None:
        self._lines = lines
        self._pending: deque[str] = deque()
        self._record: list[str] = []
        self.count = 0

    def __iter__(self) -> _ReplayableLines:
        return self

    def __next__(self) -> str:
        if len(self._record) >= MAX_RECORD_LINES:
            raise _RecordTooLong
        line = self._pending.popleft() if self._pending else next(self._lines)
        self._record.append(line)
        self.count += 1
        return line

    def start_record(self) -> int:
        self._record.clear()
        return self.count + 1

    @property
    def spanned(self) -> int:
        return len(self._record)

    def replay_after_first_line(self) -> None:
        rest = self._record[1:]
        self._pending.extendleft(reversed(rest))
        self.count -= len(rest)
        self._record.clear()


def _has_invalid_bytes(values: list[str]) -> bool:
    # Undecodable bytes arrive as lone surrogates through errors="surrogateescape".
    return any(not v.isascii() and any("\udc80" <= c <= "\udcff" for c in v) for v in values)


def read_delimited(text: TextIO, delimiter: str) -> Iterator[FeedRecord]:
    """Rows of a CSV (``,``) or TSV (``\\t``) stream with a header row."""
    lines = _ReplayableLines(text)
    if delimiter == ",":
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, strict=True)
    else:
        reader = csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FeedFormatError("the feed is empty; expected a header row first") from None
    except (csv.Error, _RecordTooLong) as exc:
        raise FeedFormatError(f"the header row (line 1) cannot be parsed: {exc}") from exc
    header = [name.strip() for name in header]
    while True:
        start = lines.start_record()
        try:
            values = next(reader)
        except StopIteration:
            return
        except _RecordTooLong:
            yield ParseError(
                start,
                f"a quoted field runs over {MAX_RECORD_LINES} lines; "
                "look for an unclosed quote on this line",
            )
            lines.replay_after_first_line()
            continue
        except csv.Error as exc:
            yield ParseError(start, f"broken quoting ({exc}); fix the quotes on this line")
            lines.replay_after_first_line()
            continue
        if not values or values == [""]:
            continue  # blank line
        if len(values) != len(header):
            yield ParseError(
                start,
                f"expected {len(header)} fields like the header, found "
                f"{len(values)}; check delimiters and quoting on this line",
            )
            if lines.spanned > 1:  # probably an unclosed quote: re-read what it swallowed
                lines.replay_after_first_line()
        elif _has_invalid_bytes(values):
            yield ParseError(start, "invalid UTF-8 bytes; re-export the feed as UTF-8")
        else:
            yield FeedRow(start, dict(zip(header, values, strict=True)))


# ----------------------------------------------------------------- JSON lines


def read_jsonl(binary: BinaryIO) -> Iterator[FeedRecord]:
    """Objects of a JSON-lines stream; bad lines are errors carrying their bytes."""
    for number, line in enumerate(binary, start=1):
        raw = line.rstrip(b"\r\n")
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield ParseError(number, f"invalid UTF-8 at byte {exc.start}", raw)
            continue
        except json.JSONDecodeError as exc:
            yield ParseError(number, f"invalid JSON: {exc.msg} at column {exc.colno}", raw)
            continue
        if isinstance(value, dict):
            yield FeedRow(number, value)
        else:
            yield ParseError(number, f"a JSON {type(value).__name__}, not an object", raw)


# ------------------------------------------------------------------------ XML

_ITEM_OPEN = re.compile(rb"<(item|entry)(?=[\s>/])")
_NS_DECL = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*(["'])(.*?)\2""")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _element_value(element: ElementTree.Element) -> Any:
    children = list(element)
    if children:
        return {_local(child.tag): (child.text or "").strip() for child in children}
    return (element.text or "").strip()


def _item_fields(item: ElementTree.Element) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for child in item:
        name, value = _local(child.tag), _element_value(child)
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        elif fields[name] in ("", None):  # <title/> then <g:title>x</g:title>
            fields[name] = value
        else:
            fields[name] = [fields[name], value]
    return fields


def _parse_item(chunk: bytes, namespaces: dict[bytes, bytes], line: int) -> FeedRecord:
    declarations = b" ".join(b'xmlns:%s="%s"' % (p, uri) for p, uri in namespaces.items())
    document = b"<catstream-items " + declarations + b">" + chunk + b"</catstream-items>"
    try:
        wrapper = ElementTree.fromstring(document)
    except ElementTree.ParseError as exc:
        return ParseError(line, f"malformed XML item ({exc}); fix the markup of this item")
    return FeedRow(line, _item_fields(wrapper[0]))


def read_xml(binary: BinaryIO) -> Iterator[FeedRecord]:
    """Items of a Google Merchant RSS/Atom stream, each parsed on its own."""
    namespaces: dict[bytes, bytes] = {b"g": GOOGLE_NS.encode()}
    buffer, buffer_line, eof = b"", 1, False
    while True:
        match = _ITEM_OPEN.search(buffer)
        close = -1
        if match:
            close_tag = b"</" + match.group(1) + b">"
            close = buffer.find(close_tag, match.end())
            following = _ITEM_OPEN.search(buffer, match.end())
            if following and (close < 0 or following.start() < close):
                # An item that never closes before the next one starts.
                line = buffer_line + buffer.count(b"\n", 0, match.start())
                yield ParseError(
                    line,
                    f"<{match.group(1).decode()}> is never closed; fix the markup of this item",
                )
                buffer_line += buffer.count(b"\n", 0, following.start())
                buffer = buffer[following.start() :]
                continue
        if match and close >= 0:
            end = close + len(close_tag)
            for prefix, _, uri in _NS_DECL.findall(buffer, 0, match.start()):
                namespaces[prefix] = uri
            line = buffer_line + buffer.count(b"\n", 0, match.start())
            yield _parse_item(buffer[match.start() : end], namespaces, line)
            buffer_line += buffer.count(b"\n", 0, end)
            buffer = buffer[end:]
            continue
        if eof:
            if match:
                line = buffer_line + buffer.count(b"\n", 0, match.start())
                yield ParseError(line, "the file ends inside an item; the feed is truncated")
            return
        chunk = binary.read(_READ_BYTES)
        eof = not chunk
        if not match and len(buffer) > 64:
            # Keep a tail in case an opening tag straddles the read boundary.
            cut = len(buffer) - 64
            for prefix, _, uri in _NS_DECL.findall(buffer, 0, cut):
                namespaces[prefix] = uri
            buffer_line += buffer.count(b"\n", 0, cut)
            buffer = buffer[cut:]
        buffer += chunk
