"""Reading product JSON lines: human labels (``--labels``) and unlabelled products.

A labels line holds product fields (``product_id``, ``title``, ``description``,
``brand``, ``raw_category``, ``image_urls``, …) plus ``category``: a path string
``'A > B > C'`` (case- and whitespace-insensitive) or a taxonomy id. Human labels
are exclusive: one category per product. Every error (``LabelsError``) names the
file and line and says what to change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catstream.logs import get_logger
from catstream.taxonomy import Taxonomy

log = get_logger(__name__)

CATEGORY_FIELD = "category"


class LabelsError(ValueError):
    """A labels or products file is invalid; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class ProductLine:
    """One product read from a JSON-lines file, with where it came from."""

    source: str
    line: int
    fields: dict[str, Any]

    @property
    def product_id(self) -> str:
        return str(self.fields["product_id"])


@dataclass(frozen=True, slots=True)
class LabelledProduct:
    """A product with its human label (a taxonomy id)."""

    source: str
    line: int
    fields: dict[str, Any]
    category_id: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def product_id(self) -> str:
        return str(self.fields["product_id"])


def iter_product_lines(path: Path | str) -> Iterator[ProductLine]:
    """Each non-blank line of a JSON-lines file as a product mapping.

    A line without ``product_id`` gets ``<file name>:<line>`` so that every product
    can be keyed; raises LabelsError on unreadable files, bad JSON or non-objects.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError as exc:
        raise LabelsError(f"{path}: file not found; pass an existing JSON-lines file") from exc
    with handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LabelsError(
                    f"{path}:{number}: bad JSON ({exc.msg} at column {exc.colno}); "
                    "each line must be one JSON object"
                ) from None
            if not isinstance(value, dict):
                raise LabelsError(
                    f"{path}:{number}: expected a JSON object with product fields, "
                    f"got {type(value).__name__}"
                )
            if value.get("product_id") in (None, ""):
                value["product_id"] = f"{path.name}:{number}"
            yield ProductLine(str(path), number, value)


def read_products(path: Path | str) -> list[ProductLine]:
    """All products of an (unlabelled) JSON-lines file; an empty file is an error."""
    products = list(iter_product_lines(path))
    if not products:
        raise LabelsError(f"{path}: no products; the file is empty, add one JSON object per line")
    return products


def _category_of(item: ProductLine, taxonomy: Taxonomy, require_leaf: bool) -> int:
    where = f"{item.source}:{item.line}"
    value = item.fields.get(CATEGORY_FIELD)
    if value is None or value == "" or isinstance(value, bool | float | list | dict):
        raise LabelsError(
            f"{where}: missing or invalid 'category'; give a path 'A > B > C' or a taxonomy id"
        )
    try:
        category_id = taxonomy.resolve(value)
    except KeyError as exc:
        raise LabelsError(f"{where}: {exc}") from None
    if require_leaf and not taxonomy.is_leaf(category_id):
        children = ", ".join(repr(taxonomy.name(c)) for c in taxonomy.children(category_id)[:3])
        raise LabelsError(
            f"{where}: category {taxonomy.path_str(category_id)!r} is not a leaf; "
            f"label with one of its children ({children}, …)"
        )
    return category_id


def read_labels(
    path: Path | str, taxonomy: Taxonomy, *, require_leaf: bool = False
) -> list[LabelledProduct]:
    """Human-labelled products, categories resolved against ``taxonomy``.

    A product listed twice with the same category is kept once; with two different
    categories it is an error (human labels are exclusive).
    """
    labelled: dict[str, LabelledProduct] = {}
    for item in iter_product_lines(path):
        category_id = _category_of(item, taxonomy, require_leaf)
        fields = {k: v for k, v in item.fields.items() if k != CATEGORY_FIELD}
        previous = labelled.get(item.product_id)
        if previous is not None:
            if previous.category_id != category_id:
                raise LabelsError(
                    f"{item.source}:{item.line}: product {item.product_id!r} is labelled "
                    f"{taxonomy.path_str(category_id)!r} here but "
                    f"{taxonomy.path_str(previous.category_id)!r} on line {previous.line}; "
                    "keep one label per product"
                )
            log.warning("duplicate_label_skipped", source=item.source, line=item.line)
            continue
        labelled[item.product_id] = LabelledProduct(item.source, item.line, fields, category_id)
    if not labelled:
        raise LabelsError(
            f"{path}: no labelled products; the file is empty, add one JSON object per line "
            "with product fields and 'category'"
        )
    return list(labelled.values())
