"""Reading labels and product JSON lines, and the errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from catstream.taxonomy import Taxonomy
from training.labels import LabelsError, read_labels, read_products

TAXONOMY = Taxonomy.from_lines(
    ["1 - Apparel", "2 - Apparel > Dresses", "3 - Apparel > Shoes", "4 - Home"], source="t.txt"
)


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


def test_reads_paths_and_ids(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "labels.jsonl",
        [
            {"product_id": "a", "title": "Red dress", "category": "apparel >dresses"},
            "",
            {"product_id": "b", "title": "Sneakers", "category": 3},
            {"title": "Lamp", "category": "4"},
        ],
    )
    labels = read_labels(path, TAXONOMY)
    assert [(x.product_id, x.category_id, x.line) for x in labels] == [
        ("a", 2, 1),
        ("b", 3, 3),
        ("labels.jsonl:4", 4, 4),
    ]
    assert labels[0].fields == {"product_id": "a", "title": "Red dress"}


def test_duplicate_same_label_is_kept_once(tmp_path: Path) -> None:
    row = {"product_id": "a", "title": "Red dress", "category": 2}
    labels = read_labels(write_lines(tmp_path / "l.jsonl", [row, row]), TAXONOMY)
    assert len(labels) == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], r"l\.jsonl: no labelled products; the file is empty"),
        (["", "  "], r"l\.jsonl: no labelled products"),
        (
            [{"product_id": "a", "category": 2}, "{not json"],
            r"l\.jsonl:2: bad JSON .*each line must be one JSON object",
        ),
        (["[1, 2]"], r"l\.jsonl:1: expected a JSON object"),
        ([{"product_id": "a", "title": "x"}], r"l\.jsonl:1: missing or invalid 'category'"),
        (
            [
                {"product_id": "a", "category": 2},
                {"product_id": "b", "category": "Apparel > Dress"},
            ],
            r"l\.jsonl:2: unknown category path 'Apparel > Dress'"
            r".*did you mean 'Apparel > Dresses'",
        ),
        ([{"product_id": "a", "category": 99}], r"l\.jsonl:1: category id 99 is not in taxonomy"),
        (
            [{"product_id": "a", "category": 2}, {"product_id": "a", "category": 3}],
            r"l\.jsonl:2: product 'a' is labelled 'Apparel > Shoes' here but 'Apparel > Dresses'"
            r" on line 1",
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, rows: list[Any], message: str) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    with pytest.raises(LabelsError, match=message):
        read_labels(path, TAXONOMY)


def test_require_leaf(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "l.jsonl", [{"product_id": "a", "category": "Apparel"}])
    assert read_labels(path, TAXONOMY)[0].category_id == 1
    with pytest.raises(LabelsError, match=r"l\.jsonl:1: category 'Apparel' is not a leaf"):
        read_labels(path, TAXONOMY, require_leaf=True)


def test_read_products(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "u.jsonl", [{"product_id": "x", "title": "t"}, {"title": "u"}])
    assert [p.product_id for p in read_products(path)] == ["x", "u.jsonl:2"]
    with pytest.raises(LabelsError, match="file not found"):
        read_products(tmp_path / "missing.jsonl")
    with pytest.raises(LabelsError, match=r"empty\.jsonl: no products"):
        read_products(write_lines(tmp_path / "empty.jsonl", [""]))
