"""Writes generated feed rows in one of the four feed formats, and breaks rows on purpose.

``FeedWriter.write(columns)`` writes one well-formed row; ``write_broken(kind,
columns)`` writes the row damaged in a way that the matching reader in
``feeds.formats`` cannot parse (``PARSE_FAILING_KINDS``). Both return the line
the row starts on, so tests can check the reader reports the same line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

from feeds.formats import GOOGLE_NS

# Damage that the reader of each format reports as a parse error. For JSON lines
# the damaged line is forwarded as raw bytes instead (the stream dead-letters it).
PARSE_FAILING_KINDS: dict[str, tuple[str, ...]] = {
    "csv": ("broken_quote", "field_count", "invalid_utf8"),
    "tsv": ("field_count", "invalid_utf8"),
    "jsonl": ("invalid_json", "invalid_utf8"),
    "xml": ("undefined_entity", "mismatched_tag"),
}
_PLAIN_XML_ELEMENTS = frozenset({"title", "link", "description"})
_XML_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_BAD_BYTES = b"\xff\xfe\xc3("


class FeedWriter:
    """One feed file being written; call ``close`` (or use as a context manager)."""

    def __init__(self, out: BinaryIO, fmt: str, header: list[str], title: str) -> None:
        self._out, self._fmt, self._header = out, fmt, header
        self._line = 1
        if fmt in ("csv", "tsv"):
            self._emit(self._delimited(header))
        elif fmt == "xml":
            self._emit(
                b'<?xml version="1.0" encoding="UTF-8"?>\n'
                + f'<rss version="2.0" xmlns:g="{GOOGLE_NS}">\n<channel>\n'.encode()
                + f"<title>{escape(title)}</title>\n".encode()
            )

    def __enter__(self) -> FeedWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fmt == "xml":
            self._emit(b"</channel>\n</rss>\n")
        self._out.flush()

    def _emit(self, data: bytes) -> int:
        start = self._line
        self._out.write(data)
        self._line += data.count(b"\n")
        return start

    # ------------------------------------------------------------------ rows

    def write(self, columns: dict[str, Any]) -> int:
        return self._emit(self._render(columns))

    def _render(self, columns: dict[str, Any]) -> bytes:
        if self._fmt in ("csv", "tsv"):
            return self._delimited([_cell(columns.get(name)) for name in self._header])
        if self._fmt == "jsonl":
            return json.dumps(columns, ensure_ascii=False).encode() + b"\n"
        return self._xml_item(columns)

    def _delimited(self, values: list[str]) -> bytes:
        buffer = io.StringIO()
        if self._fmt == "csv":
            csv.writer(buffer, lineterminator="\n").writerow(values)
        else:
            # TSV exports carry no quoting: tabs and newlines inside values become spaces.
            buffer.write("\t".join(v.replace("\t", " ").replace("\n", " ") for v in values))
            buffer.write("\n")
        return buffer.getvalue().encode("utf-8")

    def _xml_item(self, columns: dict[str, Any]) -> bytes:
        parts = ["<item>\n"]
        for name, value in columns.items():
            # "Fashion:suitable_for" is no XML name; the reader's loose matching maps
            # "Fashion_suitable_for" back onto the same mapping column.
            local = _XML_NAME_UNSAFE.sub("_", name)
            tag = local if local in _PLAIN_XML_ELEMENTS else f"g:{local}"
            for single in value if isinstance(value, list) else [value]:
                if single is None or single == "":
                    continue
                parts.append(f"  <{tag}>{escape(_cell(single))}</{tag}>\n")
        parts.append("</item>\n")
        return "".join(parts).encode("utf-8")

    def write_broken(self, kind: str, columns: dict[str, Any]) -> int:
        """Write the row damaged as ``kind`` (one of PARSE_FAILING_KINDS[fmt])."""
        good = self._render(columns)
        if kind == "invalid_utf8":
            cut = good.find(b"\n") if self._fmt != "jsonl" else len(good) // 2
            line = good.replace(b"\n", b" ") if self._fmt in ("csv", "tsv") else good
            broken = line[: max(cut, 1)] + _BAD_BYTES + line[max(cut, 1) :]
            if not broken.endswith(b"\n"):
                broken += b"\n"
        elif kind == "broken_quote":
            # One physical line, so the damage costs exactly one row (a quoted newline
            # after the damage would start a second, phantom row).
            values = [_cell(columns.get(n)).replace("\n", " ") for n in self._header]
            first, rest = values[0], self._delimited(values[1:])
            broken = f'"{first}"x,'.encode() + rest  # text after a closing quote
        elif kind == "field_count":
            values = [_cell(columns.get(n)).replace("\n", " ") for n in self._header]
            broken = self._delimited(values[:-2] if self._fmt == "tsv" else [*values, "surplus"])
        elif kind == "invalid_json":
            broken = good.rstrip(b"\n")[: max(len(good) // 2, 2)] + b"\n"  # truncated object
        elif kind == "undefined_entity":
            broken = good.replace(b"</item>", b"  <g:note>caf&eacute; &nbsp;</g:note>\n</item>")
        elif kind == "mismatched_tag":
            broken = good.replace(b"</item>", b"  <g:condition>new</g:conditon>\n</item>")
        else:
            raise ValueError(f"unknown damage kind {kind!r} for {self._fmt}")
        return self._emit(broken)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
