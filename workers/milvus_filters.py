"""Milvus filters whose values are data, never syntax.

A filter is a template plus its values: ``Filter("product_id in {ids}", {"ids": [...]})``.
No value is ever pasted into an expression. ``Filter.kwargs(binds)`` gives the
arguments of a pymilvus call:

* Milvus 2.5+ binds templates on the server (pymilvus ``filter_params``), and so
  does the local stack's milvus-lite server (``deploy/services/milvus_lite_server``);
* a server that does not (plain ``milvus-lite server``, Milvus 2.3 as
  ``stack up --milvus standalone`` runs it) gets the expression rendered here
  (``render``): each ``{name}`` outside a string literal becomes a literal of its
  value, strings double-quoted with every character the Milvus and milvus-lite
  lexers treat specially escaped (``\\``, ``"``, newline, carriage return, tab).

``binds_templates(client, collection)`` asks the server which it is.
``tests/unit/test_milvus_filters.py`` checks with hypothesis that any string
renders to a literal milvus-lite's parser reads back as exactly that string.

(pymilvus' own ``get(ids=)`` and ``delete(ids=)`` paste ids between single
quotes, so an id like ``x'] or product_id not in ['`` once deleted every row:
catstream never calls them.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymilvus import MilvusClient, MilvusException
from pymilvus.grpc_gen import schema_pb2

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_QUOTES = ('"', "'")


class TemplateError(ValueError):
    """A filter template that cannot be rendered (missing or unsupported value)."""


@dataclass(frozen=True)
class Filter:
    """A Milvus filter expression and the values it binds."""

    expr: str
    params: dict[str, Any]

    def also(self, clause: str) -> Filter:
        """This filter and ``clause`` (a constant expression without values)."""
        return Filter(f"{self.expr} and {clause}", self.params)

    def kwargs(self, server_binds: bool) -> dict[str, Any]:
        """``filter=`` (and ``filter_params=``) for a pymilvus call to such a server."""
        if server_binds:
            return {"filter": self.expr, "filter_params": self.params}
        return {"filter": render(self.expr, self.params)}


def binds_templates(client: MilvusClient, collection: str) -> bool:
    """Whether the server binds ``filter_params`` (asks it with a query matching nothing)."""
    try:
        client.query(
            collection, filter="product_id in {ids}", filter_params={"ids": []}, limit=1, timeout=30
        )
    except MilvusException as exc:
        if "{" in str(exc):  # the parser met the placeholder itself
            return False
        raise
    return True


def string_literal(value: str) -> str:
    """``value`` as a double-quoted milvus-lite string literal."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def literal(value: Any) -> str:
    """A Python value (str, int, float, bool or a list of them) as a filter literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateError(f"{value} has no filter literal")
        return repr(value)
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    raise TemplateError(f"unsupported filter value of type {type(value).__name__}")


def template_value(proto: schema_pb2.TemplateValue) -> Any:
    """The Python value a ``TemplateValue`` (as pymilvus sends it) carries."""
    kind = proto.WhichOneof("val")
    if kind == "array_val":
        return _array_value(proto.array_val)
    if kind in ("bool_val", "int64_val", "float_val", "string_val"):
        return getattr(proto, kind)
    raise TemplateError(f"unsupported filter template value {kind!r}")


def _array_value(proto: schema_pb2.TemplateArrayValue) -> list[Any]:
    kind = proto.WhichOneof("data")
    if kind is None:
        return []
    if kind == "array_data":
        return [_array_value(item) for item in proto.array_data.data]
    if kind == "json_data":
        return [json.loads(item) for item in proto.json_data.data]
    return list(getattr(proto, kind).data)


def render(expr: str, values: Mapping[str, Any]) -> str:
    """``expr`` with each ``{name}`` outside string literals replaced by its value's literal."""
    out: list[str] = []
    i, n = 0, len(expr)
    while i < n:
        ch = expr[i]
        if ch in _QUOTES:
            end = _string_end(expr, i)
            out.append(expr[i:end])
            i = end
        elif ch == "{":
            close = expr.find("}", i)
            name = expr[i + 1 : close] if close > 0 else ""
            if not name.isidentifier():
                raise TemplateError(f"unterminated or invalid placeholder at {i} in {expr!r}")
            if name not in values:
                raise TemplateError(f"no filter_params value for {{{name}}} in {expr!r}")
            out.append(literal(values[name]))
            i = close + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def render_proto(expr: str, values: Mapping[str, schema_pb2.TemplateValue]) -> str:
    """``render`` with the values of a gRPC request's ``expr_template_values``."""
    return render(expr, {name: template_value(value) for name, value in values.items()})


def _string_end(expr: str, start: int) -> int:
    """Index just past the string literal opening at ``start``."""
    quote, i = expr[start], start + 1
    while i < len(expr):
        if expr[i] == "\\":
            i += 2
        elif expr[i] == quote:
            return i + 1
        else:
            i += 1
    raise TemplateError(f"unterminated string literal at {start} in {expr!r}")
