"""Network mappings: a feed's own column names → ``RawProduct`` fields.

A mapping file (TOML or YAML, ``feeds/mappings/<network>.toml``) names, for each
event field, the feed columns that may hold it, best first::

    name = "awin"          # the network; also written into each event's `network`
    format = "csv"         # the usual file format (a hint for the generator)
    locale = "en-GB"       # price locale hint, sent as extra.price_locale
    [fields]
    product_id = ["aw_product_id"]
    image_urls = ["merchant_image_url", "aw_image_url", "alternate_image"]
    [separators]           # a column that packs several values in one cell
    image_urls = ","
    [defaults]             # used when the row has no value for the field
    currency = "GBP"

Column names match loosely (case, spaces, ``-``/``.``/``:`` and a ``g:`` prefix are
ignored). A scalar field takes the first non-empty candidate; ``image_urls``
collects every candidate. Columns no field claims go to ``extra`` under their own
names. ``generic`` lists many common spellings, so it reads most feeds unconfigured.
Mapping never validates: a value of the wrong type goes through for the stream
to dead-letter with a reason.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.events import RawProduct

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
LIST_FIELDS = frozenset({"image_urls"})
_EVENT_FIELDS = frozenset(RawProduct.model_fields) - {"schema_version", "extra"}
_DELETE_WORDS = frozenset({"delete", "deleted", "remove", "removed", "d", "del", "expired"})
_UPSERT_WORDS = frozenset({"upsert", "update", "updated", "insert", "add", "new", "u", "i", "a"})
_KEY_NOISE = re.compile(r"[\s.:\-/]+")


class MappingError(ValueError):
    """A mapping file is missing or invalid; the message names the file and the fix."""


def column_key(name: str) -> str:
    """Loose form of a column name: ``g:Image-Link`` → ``image_link``."""
    key = name.strip().lower()
    key = key.removeprefix("g:")
    return _KEY_NOISE.sub("_", key).strip("_")


@dataclass(frozen=True)
class NetworkMapping:
    name: str
    fields: dict[str, tuple[str, ...]]
    format: str | None = None
    locale: str | None = None
    separators: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = "<inline>"

    def column(self, event_field: str) -> str | None:
        """The preferred (first) column for a field, as the feed spells it."""
        columns = self.fields.get(event_field)
        return columns[0] if columns else None

    def map_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A RawProduct-shaped dict for one feed row (not validated)."""
        by_key: dict[str, tuple[str, Any]] = {}
        for name, value in row.items():
            by_key.setdefault(column_key(str(name)), (str(name), value))
        event: dict[str, Any] = {}
        claimed: set[str] = set()
        for event_field, columns in self.fields.items():
            keys = [column_key(c) for c in columns]
            claimed.update(k for k in keys if k in by_key)
            values = [by_key[k][1] for k in keys if k in by_key and _present(by_key[k][1])]
            if event_field in LIST_FIELDS:
                if values:
                    event[event_field] = self._as_list(event_field, values)
            elif values:
                event[event_field] = values[0]
        for event_field, default in self.defaults.items():
            event.setdefault(event_field, default)
        event.setdefault("network", self.name)
        _normalise_id_and_op(event)
        extra = {
            name: value
            for key, (name, value) in by_key.items()
            if key not in claimed and _present(value)
        }
        if self.locale:
            extra.setdefault("price_locale", self.locale)
        if extra:
            event["extra"] = extra
        return event

    def _as_list(self, event_field: str, values: list[Any]) -> list[Any]:
        separator = self.separators.get(event_field)
        out: list[Any] = []
        for value in values:
            if isinstance(value, list):
                out.extend(value)
            elif isinstance(value, str) and separator:
                out.extend(part.strip() for part in value.split(separator) if part.strip())
            else:
                out.append(value)
        return out


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _normalise_id_and_op(event: dict[str, Any]) -> None:
    product_id = event.get("product_id")
    # JSON feeds often send numeric ids; the id is still an identifier, not a number.
    if isinstance(product_id, int) and not isinstance(product_id, bool):
        event["product_id"] = str(product_id)
    elif isinstance(product_id, str):
        event["product_id"] = product_id.strip()
    op = event.get("op")
    if isinstance(op, str):
        word = op.strip().lower()
        if word in _DELETE_WORDS:
            event["op"] = "delete"
        elif word in _UPSERT_WORDS:
            event["op"] = "upsert"


# ---------------------------------------------------------------------- loading


def _as_columns(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MappingError(f"{where}: expected a column name or a list of column names")


def mapping_from_dict(data: Mapping[str, Any], source: str) -> NetworkMapping:
    """Build and check a mapping from parsed TOML/YAML."""
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise MappingError(f'{source}: set `name = "<network>"` at the top')
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, dict) or "product_id" not in raw_fields:
        raise MappingError(f"{source}: add a [fields] table with at least product_id")
    unknown = set(raw_fields) - _EVENT_FIELDS
    if unknown:
        raise MappingError(
            f"{source}: unknown event fields {sorted(unknown)}; "
            f"use names from {sorted(_EVENT_FIELDS)} (other columns go to extra by themselves)"
        )
    fields = {k: _as_columns(v, f"{source} [fields].{k}") for k, v in raw_fields.items()}
    return NetworkMapping(
        name=name,
        fields=fields,
        format=data.get("format"),
        locale=data.get("locale"),
        separators=dict(data.get("separators") or {}),
        defaults=dict(data.get("defaults") or {}),
        source=source,
    )


def load_mapping_file(path: Path | str) -> NetworkMapping:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc.strerror}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise MappingError(f"{path} is not valid TOML/YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise MappingError(f"{path}: expected a table of settings at the top level")
    return mapping_from_dict(data, str(path))


def available_networks() -> list[str]:
    return sorted(p.stem for p in MAPPINGS_DIR.glob("*.toml"))


def load_mapping(network: str, mapping_file: Path | str | None = None) -> NetworkMapping:
    """The mapping for ``network``: ``mapping_file`` if given, else the shipped one."""
    if mapping_file is not None:
        return load_mapping_file(mapping_file)
    path = MAPPINGS_DIR / f"{network}.toml"
    if not path.exists():
        raise MappingError(
            f"no mapping for network {network!r}; use one of {', '.join(available_networks())}, "
            "or pass --mapping FILE (try --network generic for common column names)"
        )
    return load_mapping_file(path)
