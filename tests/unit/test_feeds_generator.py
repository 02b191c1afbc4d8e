"""Feed generator: deterministic, messy, readable back through each network's mapping."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from catstream.settings import load_settings
from feeds.feed_writer import PARSE_FAILING_KINDS
from feeds.formats import FeedRow, ParseError, read_feed
from feeds.generator import GenerateOptions, GenerateReport, generate_feed
from feeds.mapping import available_networks, load_mapping
from normaliser import fingerprint, normalise_product
from schemas.events import RawProduct

TAXONOMY = load_settings().taxonomy_path
FIELDS = ("title", "description", "brand", "raw_category", "gender", "image_urls")


def _generate(
    tmp_path: Path,
    network: str,
    fmt: str | None = None,
    seed: int = 1,
    products: int = 400,
    **extra: Any,
) -> tuple[Path, GenerateReport, str]:
    options = GenerateOptions(
        products=products, network=network, seed=seed, fmt=fmt, taxonomy_path=TAXONOMY, **extra
    )
    out, labels = io.BytesIO(), io.StringIO()
    report = generate_feed(options, out, labels)
    path = tmp_path / f"{network}-{seed}.{report.fmt}"
    path.write_bytes(out.getvalue())
    return path, report, labels.getvalue()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _, labels_a = _generate(tmp_path / "a", "awin", corrupt_fraction=0.05)
    again, _, labels_b = _generate(tmp_path / "b", "awin", corrupt_fraction=0.05)
    other, _, _ = _generate(tmp_path, "awin", seed=2, corrupt_fraction=0.05)
    assert first.read_bytes() == again.read_bytes()
    assert labels_a == labels_b
    assert first.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("network", available_networks())
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "xml"])
def test_every_network_and_format_reads_back(tmp_path: Path, network: str, fmt: str) -> None:
    path, report, labels = _generate(tmp_path, network, fmt, corrupt_fraction=0.1)
    mapping = load_mapping(network)
    records = list(read_feed(path, fmt))
    errors = [r.line for r in records if isinstance(r, ParseError)]
    assert errors == report.parse_error_lines  # the reader blames exactly the broken rows
    assert len(records) == report.rows == 400
    assert sum(report.corrupt.values()) == 40
    assert set(report.corrupt) <= {
        "missing_id",
        "oversize_id",
        "wrong_type",
        *PARSE_FAILING_KINDS[fmt],
    }
    corrupt = set(report.corrupt_lines)
    valid = 0
    for record in records:
        if isinstance(record, FeedRow) and record.line not in corrupt:
            raw = RawProduct.model_validate(mapping.map_row(record.fields))
            assert normalise_product(raw).product_id == raw.product_id
            valid += 1
    assert valid == report.rows - len(corrupt)
    assert len(labels.splitlines()) == report.products


def test_columns_match_the_network_mapping(tmp_path: Path) -> None:
    path, _, _ = _generate(tmp_path, "cj", "tsv", products=20)
    header = path.read_text().splitlines()[0].split("\t")
    mapping = load_mapping("cj")
    columns = [mapping.column(f) for f in ("product_id", "title", "raw_category")]
    assert columns == [header[0], header[1], header[4]]
    assert {"AVAILABILITY", "SHIPPING_COST"} <= set(header)  # unmapped: they go to extra


def test_updates_keep_or_change_the_fingerprint(tmp_path: Path) -> None:
    path, report, _ = _generate(
        tmp_path, "generic", "jsonl", products=600, duplicate_fraction=0.05, update_fraction=0.2
    )
    mapping = load_mapping("generic")
    seen: dict[str, tuple[str, str | None, int | None]] = {}
    same_print_new_price = changed_title = duplicates = 0
    for record in read_feed(path):
        assert isinstance(record, FeedRow)
        product = normalise_product(RawProduct.model_validate(mapping.map_row(record.fields)))
        current = (fingerprint(product, FIELDS), product.price, product.updated_at)
        if product.product_id in seen:
            before = seen[product.product_id]
            if current == before:
                duplicates += 1
            elif current[0] == before[0]:
                same_print_new_price += 1
                assert current[2] is not None  # an update is always dated, and newer
                assert before[2] is None or current[2] > before[2]
            else:
                changed_title += 1
        seen[product.product_id] = current
    assert duplicates >= report.duplicates > 0
    assert same_print_new_price > report.price_updates // 2
    assert changed_title > report.title_updates // 2


def test_labels_are_taxonomy_leaves(tmp_path: Path) -> None:
    from catstream.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(TAXONOMY)
    _, _, labels = _generate(tmp_path, "rakuten", products=100)
    for line in labels.splitlines():
        label = json.loads(line)
        assert taxonomy.is_leaf(label["category_id"])
        assert label["category_path"] == taxonomy.path_str(label["category_id"])


def test_titles_relate_to_the_category(tmp_path: Path) -> None:
    path, _, labels = _generate(
        tmp_path, "awin", "jsonl", products=300, duplicate_fraction=0, update_fraction=0
    )
    truth = {
        json.loads(x)["product_id"]: json.loads(x)["category_path"] for x in labels.splitlines()
    }
    mapping = load_mapping("awin")
    related = 0
    for record in read_feed(path):
        assert isinstance(record, FeedRow)
        product = normalise_product(RawProduct.model_validate(mapping.map_row(record.fields)))
        leaf_words = {
            w.lower().rstrip("s")
            for w in truth[product.product_id]
            .split(" > ")[-1]
            .replace("&", " ")
            .replace(",", " ")
            .split()
        }
        title_words = {w.lower().rstrip("s") for w in (product.title or "").split()}
        related += bool(leaf_words & title_words)
    assert related / 300 > 0.7  # the rest are translated nouns


def test_image_base_url(tmp_path: Path) -> None:
    path, _, _ = _generate(
        tmp_path, "generic", "jsonl", products=20, image_base_url="http://127.0.0.1:9999/"
    )
    rows = [json.loads(line) for line in path.read_bytes().splitlines()]
    links = [row.get("image_link") for row in rows if row.get("image_link")]
    # Only some products have an image, always on the local server, named by ordinal.
    assert 0 < len(links) < len(rows)
    assert all(link.startswith("http://127.0.0.1:9999/img/") for link in links)
    assert all(link.removeprefix("http://127.0.0.1:9999/img/")[:-4].isdigit() for link in links)
