"""Feed readers: every format yields rows in order, and broken rows as errors with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from feeds.formats import FeedFormatError, FeedRow, ParseError, guess_format, read_feed


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _summary(path: Path, fmt: str | None = None) -> list[tuple[str, int, object]]:
    out: list[tuple[str, int, object]] = []
    for record in read_feed(path, fmt):
        if isinstance(record, FeedRow):
            out.append(("row", record.line, record.fields))
        else:
            out.append(("error", record.line, record.reason.split(" ")[0]))
    return out


def test_csv_rows_and_broken_rows_with_their_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "feed.csv",
        b"\xef\xbb\xbfid,title,price\n"  # BOM before the header
        b'1,"Red, shoe",12\n'  # 2: quoted comma
        b'2,"bad"x,3\n'  # 3: text after a closing quote
        b"3,ok,4\n"  # 4
        b"4,too,many,fields\n"  # 5
        b'5,"multi\nline",6\n'  # 6-7: a quoted newline is fine
        b"\n"  # 8: blank
        b"6,\xff\xfebad,7\n"  # 9: invalid UTF-8
        b"7,last,8\n",  # 10
    )
    assert _summary(path) == [
        ("row", 2, {"id": "1", "title": "Red, shoe", "price": "12"}),
        ("error", 3, "broken"),
        ("row", 4, {"id": "3", "title": "ok", "price": "4"}),
        ("error", 5, "expected"),
        ("row", 6, {"id": "5", "title": "multi\nline", "price": "6"}),
        ("error", 9, "invalid"),
        ("row", 10, {"id": "7", "title": "last", "price": "8"}),
    ]


@pytest.mark.parametrize("later", [b"", b'99,"quoted"\n'])
def test_csv_unclosed_quote_costs_one_row_not_the_file(tmp_path: Path, later: bytes) -> None:
    rows = b"".join(b"%d,t%d\n" % (i, i) for i in range(100))
    path = _write(tmp_path, "feed.csv", b'id,title\n1,"never closed\n' + rows + later)
    summary = _summary(path)
    assert summary[0][:2] == ("error", 2)
    assert summary[1:101] == [("row", i + 3, {"id": str(i), "title": f"t{i}"}) for i in range(100)]


def test_tsv_takes_quotes_literally(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "feed.tsv", b'ID\tTITLE\n1\t12" pizza tray\n2\tmissing a field\textra\n3\tok\n'
    )
    assert _summary(path) == [
        ("row", 2, {"ID": "1", "TITLE": '12" pizza tray'}),
        ("error", 3, "expected"),
        ("row", 4, {"ID": "3", "TITLE": "ok"}),
    ]


def test_jsonl_keeps_the_bytes_of_bad_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "feed.jsonl", b'{"id": 1}\nnot json\n\xff\xfe\n[1]\n\n{"id": "2"}\n{"id": "3"'
    )
    records = list(read_feed(path))
    assert [r.line for r in records] == [1, 2, 3, 4, 6, 7]
    errors = [r for r in records if isinstance(r, ParseError)]
    assert [e.raw for e in errors] == [b"not json", b"\xff\xfe", b"[1]", b'{"id": "3"']
    assert [e.reason.split(":")[0] for e in errors] == [
        "invalid JSON",
        "invalid UTF-8 at byte 0",
        "a JSON list, not an object",
        "invalid JSON",
    ]


GOOGLE_RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">
<channel><title>Shop</title>
<item><g:id>1</g:id><title>Shoe &amp; sock</title><g:image_link>a</g:image_link>
<g:additional_image_link>b</g:additional_image_link><g:additional_image_link>c</g:additional_image_link>
<g:shipping><g:country>DE</g:country><g:price>4.95 EUR</g:price></g:shipping></item>
<item><g:id>2</g:id><title>Bad &nbsp; entity</title></item>
<item><g:id>3</g:id><title>unclosed
<item><g:id>4</g:id><title>fine</title></item><item><g:id>5</g:id>
<title>same line</title></item>
</channel></rss>
"""


def test_google_merchant_xml_items(tmp_path: Path) -> None:
    path = _write(tmp_path, "feed.xml", GOOGLE_RSS)
    assert _summary(path) == [
        (
            "row",
            4,
            {
                "id": "1",
                "title": "Shoe & sock",
                "image_link": "a",
                "additional_image_link": ["b", "c"],
                "shipping": {"country": "DE", "price": "4.95 EUR"},
            },
        ),
        ("error", 7, "malformed"),
        ("error", 8, "<item>"),
        ("row", 9, {"id": "4", "title": "fine"}),
        ("row", 9, {"id": "5", "title": "same line"}),
    ]


def test_xml_items_across_read_boundaries(tmp_path: Path) -> None:
    items = b"".join(
        b"<item><g:id>%d</g:id><title>%s</title></item>\n" % (i, b"x" * 5000) for i in range(400)
    )
    path = _write(
        tmp_path,
        "big.xml",
        b'<rss xmlns:g="http://base.google.com/ns/1.0"><channel>\n' + items + b"</channel></rss>",
    )
    records = list(read_feed(path))
    assert [r.fields["id"] for r in records if isinstance(r, FeedRow)] == [
        str(i) for i in range(400)
    ]
    assert [r.line for r in records] == list(range(2, 402))


def test_truncated_xml_reports_the_last_item(tmp_path: Path) -> None:
    path = _write(tmp_path, "cut.xml", b"<rss><channel>\n<item><g:id>1</g:id>\n<g:tit")
    assert _summary(path) == [("error", 2, "the")]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "tsv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.xml", "xml"),
        ("a.rss", "xml"),
    ],
)
def test_format_from_extension(name: str, fmt: str) -> None:
    assert guess_format(name) == fmt


def test_unknown_extension_says_to_pass_format() -> None:
    with pytest.raises(FeedFormatError, match="--format"):
        guess_format("feed.parquet")


def test_empty_csv_is_a_feed_error(tmp_path: Path) -> None:
    with pytest.raises(FeedFormatError, match="header"):
        list(read_feed(_write(tmp_path, "empty.csv", b"")))
