"""The messy affiliate-feed generator behind ``catstream feed generate``.

``generate_feed`` writes ``products`` rows for a network, in the network's
columns (from its mapping file, so the publisher reads them back) and a chosen
format. The same seed gives the same bytes. Rows are:

* new products from taxonomy leaves (the ground truth goes to ``labels_out``);
* exact duplicates of earlier rows (``duplicate_fraction``);
* updates of earlier products with a later ``updated_at`` (``update_fraction``):
  half change only the price (same fingerprint), half change the title;
* corrupt rows (``corrupt_fraction``), half of which each reader rejects as a
  parse error (broken quoting, wrong field count, invalid UTF-8, malformed XML;
  for JSON lines: invalid JSON/UTF-8, forwarded raw so the stream dead-letters
  it) and half of which parse but fail validation downstream (missing or
  oversize product_id, wrong types).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from catstream.taxonomy import load_taxonomy
from feeds import catalogue_words as words
from feeds.feed_writer import PARSE_FAILING_KINDS, FeedWriter
from feeds.mapping import NetworkMapping, load_mapping
from feeds.product_maker import MadeProduct, fill_product, messy_title, price_text, updated_at
from schemas.events import PRODUCT_ID_MAX

FIELD_ORDER = (
    "product_id",
    "title",
    "description",
    "brand",
    "raw_category",
    "price",
    "currency",
    "image_urls",
    "url",
    "merchant",
    "gender",
    "size",
    "colour",
    "updated_at",
    "op",
)
VALIDATION_FAILING_KINDS = ("missing_id", "oversize_id", "wrong_type")
_ID_PREFIX = {"awin": "", "cj": "CJ-", "rakuten": "RK", "generic": "P"}
_EXCLUDED_TOP_LEVELS = ("Mature",)
_NETWORK_LOCALE_SHARE = 0.7


@dataclass(frozen=True)
class GenerateOptions:
    products: int
    network: str
    seed: int
    taxonomy_path: Path
    fmt: str | None = None
    corrupt_fraction: float = 0.0
    duplicate_fraction: float = 0.03
    update_fraction: float = 0.06
    image_base_url: str | None = None
    mapping_file: Path | None = None


@dataclass
class GenerateReport:
    fmt: str
    rows: int = 0
    products: int = 0
    duplicates: int = 0
    price_updates: int = 0
    title_updates: int = 0
    corrupt: Counter[str] = field(default_factory=Counter)
    parse_error_lines: list[int] = field(default_factory=list)  # rows a reader rejects
    corrupt_lines: list[int] = field(default_factory=list)  # every corrupt row's line

    @property
    def parse_failing(self) -> int:
        """Rows the publisher will count as skipped (not JSON lines: those go raw)."""
        return 0 if self.fmt == "jsonl" else len(self.parse_error_lines)


class _Plan:
    """Which row is what: decided up front so counts are exact for a seed."""

    def __init__(self, rng: random.Random, options: GenerateOptions) -> None:
        n = options.products
        counts = {
            "corrupt": round(n * options.corrupt_fraction),
            "duplicate": round(n * options.duplicate_fraction),
            "price_update": round(n * options.update_fraction / 2),
            "title_update": round(n * options.update_fraction / 2),
        }
        # Row 0 is always a new product, so repeats have something to repeat.
        free = list(range(1, n))
        rng.shuffle(free)
        self.kinds: dict[int, str] = {}
        for kind, count in counts.items():
            for _ in range(min(count, len(free))):
                self.kinds[free.pop()] = kind

    def kind(self, row: int) -> str:
        return self.kinds.get(row, "new")


def _leaves(taxonomy_path: Path) -> tuple[Any, list[int]]:
    taxonomy = load_taxonomy(taxonomy_path)
    leaves = sorted(i for i in taxonomy.leaves() if taxonomy.path(i)[0] not in _EXCLUDED_TOP_LEVELS)
    return taxonomy, leaves


def _choose_locale(rng: random.Random, mapping: NetworkMapping) -> str:
    home = mapping.locale if mapping.locale in words.LOCALES else "en-GB"
    if rng.random() < _NETWORK_LOCALE_SHARE:
        return home
    return rng.choice(list(words.LOCALES))


def to_columns(fields: dict[str, Any], mapping: NetworkMapping, fmt: str) -> dict[str, Any]:
    """Event fields → the network's columns (first-choice names), in a stable order."""
    columns: dict[str, Any] = {}
    for name in FIELD_ORDER:
        candidates = mapping.fields.get(name)
        if not candidates or name not in fields:
            continue
        value = fields[name]
        if name != "image_urls" or not isinstance(value, list):
            columns[candidates[0]] = value
            continue
        columns[candidates[0]] = value[0] if value else ""
        rest = value[1:]
        if len(candidates) > 1:
            separator = mapping.separators.get("image_urls")
            if fmt in ("jsonl", "xml"):
                columns[candidates[1]] = rest
            elif separator:
                columns[candidates[1]] = separator.join(rest)
            else:  # one URL per column: awin's aw_image_url, alternate_image
                for index, column in enumerate(candidates[1:]):
                    columns[column] = rest[index] if index < len(rest) else ""
    upper = all(c.isupper() for c in (mapping.column("product_id") or "x") if c.isalpha())
    for extra, value in (
        ("availability", fields.get("_availability", "")),
        ("shipping_cost", fields.get("_shipping", "")),
    ):
        columns[extra.upper() if upper else extra] = value
    return columns


_LABEL_FIELDS = ("title", "description", "brand", "raw_category", "gender", "image_urls")


def _label_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The product as the feed shows it, so the ground truth doubles as a training file."""
    public = _public(fields)
    return {name: public[name] for name in _LABEL_FIELDS if name in public}


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if not k.startswith("_")}


class _Generator:
    def __init__(self, options: GenerateOptions, writer_fmt: str, mapping: NetworkMapping) -> None:
        self.options, self.fmt, self.mapping = options, writer_fmt, mapping
        self.rng = random.Random(options.seed)
        self.taxonomy, self.leaves = _leaves(options.taxonomy_path)
        self.made: list[MadeProduct] = []
        self.ordinal = 0

    def header(self) -> list[str]:
        sample = {name: "" for name in FIELD_ORDER} | {"image_urls": ["a", "b", "c"]}
        return list(to_columns(sample, self.mapping, self.fmt))

    def new_product(self, row: int) -> MadeProduct:
        leaf = self.rng.choice(self.leaves)
        prefix = _ID_PREFIX.get(self.mapping.name, self.mapping.name[:3].upper() + "-")
        self.ordinal += 1
        product = MadeProduct(
            product_id=f"{prefix}{100000 + self.ordinal}",
            ordinal=self.ordinal,
            category_id=leaf,
            category_path=tuple(self.taxonomy.path(leaf)),
            locale=_choose_locale(self.rng, self.mapping),
        )
        fill_product(self.rng, product, self.options.image_base_url)
        fields = product.fields
        fields["_availability"] = self.rng.choice(["in stock", "in stock", "out of stock"])
        fields["_shipping"] = self.rng.choice(["0.00", "4.95", "3,99", ""])
        if self.rng.random() < 0.9:
            fields["updated_at"] = self._timestamp(row)
        if self.mapping.fields.get("op") and self.rng.random() < 0.3:
            fields["op"] = self.rng.choice(["add", "update", "upsert"])
        return product

    def _timestamp(self, row: int) -> str | int:
        return updated_at(self.rng, row, as_epoch=self.fmt == "jsonl" and self.rng.random() < 0.5)

    def price_update(self, row: int, product: MadeProduct) -> dict[str, Any]:
        fields = dict(product.fields)
        amount = (fields["_amount"] * Decimal(str(self.rng.uniform(0.6, 0.95)))).quantize(
            Decimal("0.01")
        )
        fields["price"] = price_text(self.rng, max(amount, Decimal("0.99")), product.locale)
        fields["updated_at"] = self._timestamp(row)
        product.fields = fields
        return fields

    def title_update(self, row: int, product: MadeProduct) -> dict[str, Any]:
        fields = dict(product.fields)
        suffix = self.rng.choice(["(2024 Edition)", "- New Version", "Pro", "V2", "Limited"])
        fields["title"] = messy_title(
            self.rng, f"{product.noun} {fields['_brand']} {suffix}", fields["_brand"]
        )
        fields["updated_at"] = self._timestamp(row)
        product.fields = fields
        return fields

    def corrupt_fields(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        broken = dict(fields)
        if kind == "missing_id":
            broken["product_id"] = ""
        elif kind == "oversize_id":
            broken["product_id"] = "X" * (PRODUCT_ID_MAX + 44)
        elif self.fmt == "jsonl":  # wrong_type: JSON can carry real type errors
            broken[self.rng.choice(["price", "title", "image_urls"])] = {"unexpected": [1, 2]}
        else:  # wrong_type in a text format: a value no parser accepts
            broken["updated_at"] = "yesterday afternoon"
        return broken


def generate_feed(
    options: GenerateOptions, out: BinaryIO, labels_out: TextIO | None = None
) -> GenerateReport:
    """Write the feed to ``out`` (and ground truth to ``labels_out``); return what was written."""
    mapping = load_mapping(options.network, options.mapping_file)
    fmt = options.fmt or mapping.format or "jsonl"
    gen = _Generator(options, fmt, mapping)
    plan = _Plan(gen.rng, options)
    report = GenerateReport(fmt=fmt)
    corrupt_kinds = (*VALIDATION_FAILING_KINDS, *PARSE_FAILING_KINDS[fmt])
    with FeedWriter(out, fmt, gen.header(), f"{mapping.name} feed") as writer:
        for row in range(options.products):
            kind = plan.kind(row)
            if kind in ("duplicate", "price_update", "title_update") and gen.made:
                product = gen.rng.choice(gen.made)
                if kind == "duplicate":
                    fields = product.fields
                    report.duplicates += 1
                elif kind == "price_update":
                    fields = gen.price_update(row, product)
                    report.price_updates += 1
                else:
                    fields = gen.title_update(row, product)
                    report.title_updates += 1
                writer.write(to_columns(fields, mapping, fmt))
            elif kind == "corrupt":
                damage = gen.rng.choice(corrupt_kinds)
                fields = _public(gen.new_product(row).fields)
                report.corrupt[damage] += 1
                if damage in VALIDATION_FAILING_KINDS:
                    line = writer.write(
                        to_columns(gen.corrupt_fields(damage, fields), mapping, fmt)
                    )
                else:
                    line = writer.write_broken(damage, to_columns(fields, mapping, fmt))
                    report.parse_error_lines.append(line)
                report.corrupt_lines.append(line)
            else:
                product = gen.new_product(row)
                gen.made.append(product)
                report.products += 1
                writer.write(to_columns(product.fields, mapping, fmt))
                if labels_out is not None:
                    labels_out.write(
                        json.dumps(
                            {
                                **_label_fields(product.fields),
                                "product_id": product.product_id,
                                "category_id": product.category_id,
                                "category_path": " > ".join(product.category_path),
                                # `catstream train --labels` reads `category` (path or id).
                                "category": " > ".join(product.category_path),
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
            report.rows += 1
    return report
