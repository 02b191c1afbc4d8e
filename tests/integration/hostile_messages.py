"""Hostile ``products.raw`` messages: named malformed cases, random garbage, valid products.

Pure (bytes out, no Kafka): the hostile-input suite publishes these through the
broker and checks what the worker made of each one. Every message says what
must become of it:

* ``dead_letter``: the message is wrong; exactly one dead letter with a reason.
* ``product``: a valid product; predicted, and in Milvus and Elasticsearch.
* ``delete``: a valid delete; normalised as a delete, never dead-lettered.
* ``either``: valid JSON with an insane value that a lenient normaliser may
  accept (cleaned) or reject: exactly one of "dead-lettered" or "a product".
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Expect = Literal["dead_letter", "product", "delete", "either"]

DEPTH = 5_000  # Python's recursion limit is 1,000: json.loads raises RecursionError
HUGE_DIGITS = 5_000  # over CPython's 4,300-digit int conversion limit
BOM = b"\xef\xbb\xbf"
INJECTION_ID = "x'] or product_id not in ['"
INJECTION_ID_DOUBLE = 'x"] or product_id not in ["'


@dataclass(frozen=True)
class HostileMessage:
    kind: str
    key: bytes | None
    value: bytes | None
    expect: Expect
    product_id: str | None = None  # the product a "product"/"delete"/"either" case is about
    via_kcat: bool = False  # published with Debian's kcat instead of confluent-kafka


def _product(product_id: str, **fields: object) -> dict[str, object]:
    return {"product_id": product_id, "title": f"Blue cotton t-shirt {product_id}", **fields}


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _future_ms(years: float) -> int:
    return int((time.time() + years * 365.25 * 86400) * 1000)


def named_cases(prefix: str) -> list[HostileMessage]:
    """At least twenty distinct malformed messages (plus a few valid-but-odd ones).

    ``prefix`` makes the product ids of this run unique.
    """
    p = prefix

    def pid(name: str) -> str:
        return f"{p}-{name}"

    def keyed(kind: str, payload: dict[str, object], expect: Expect) -> HostileMessage:
        product_id = str(payload["product_id"])
        return HostileMessage(kind, product_id.encode(), _json(payload), expect, product_id)

    def raw(kind: str, key: str | bytes | None, value: bytes, expect: Expect) -> HostileMessage:
        key_bytes = key.encode() if isinstance(key, str) else key
        product_id = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        return HostileMessage(kind, key_bytes, value, expect, product_id)

    deep_extra = (
        f'{{"product_id": "{pid("deep-extra")}", "title": "Deep extra", "extra": {_nested(DEPTH)}}}'
    ).encode()
    deep_unknown = (
        f'{{"product_id": "{pid("deep-unknown")}", "title": "Deep unknown field", '
        f'"specs": {"[" * DEPTH}{"]" * DEPTH}}}'
    ).encode()
    huge_price = (
        f'{{"product_id": "{pid("huge-price")}", "title": "Huge price", '
        f'"price": {"9" * HUGE_DIGITS}}}'
    ).encode()
    huge_updated_at = (
        f'{{"product_id": "{pid("huge-updated-at")}", "title": "Huge updated_at", '
        f'"updated_at": {"7" * HUGE_DIGITS}}}'
    ).encode()

    def literal(name: str, field: str, token: str) -> bytes:
        return f'{{"product_id": "{pid(name)}", "title": "T {name}", "{field}": {token}}}'.encode()

    def escaped(name: str, field: str, json_string: str) -> bytes:
        # json_string is JSON source text, e.g. "\\ud800" stays a JSON escape
        return f'{{"product_id": "{pid(name)}", "{field}": "{json_string}"}}'.encode()

    surrogate_id = f"{pid('surrogate-id')}\ud800"
    cases = [
        # --- nesting -----------------------------------------------------------------------
        raw("deep-list", pid("deep-list"), b"[" * DEPTH, "dead_letter"),
        raw("deep-object", pid("deep-object"), _nested(DEPTH).encode(), "dead_letter"),
        raw("deep-extra", pid("deep-extra"), deep_extra, "dead_letter"),
        raw("deep-unknown-field", pid("deep-unknown"), deep_unknown, "dead_letter"),
        # --- numbers -------------------------------------------------------------------------
        raw("huge-number-top-level", pid("huge-top"), b"9" * HUGE_DIGITS, "dead_letter"),
        raw("huge-price", pid("huge-price"), huge_price, "either"),
        raw("huge-updated-at", pid("huge-updated-at"), huge_updated_at, "dead_letter"),
        keyed("overflowing-updated-at", _product(pid("ovf"), updated_at=10**30), "dead_letter"),
        keyed("negative-updated-at", _product(pid("neg"), updated_at=-(10**20)), "dead_letter"),
        raw("nan-price", pid("nan"), literal("nan", "price", "NaN"), "dead_letter"),
        raw("infinity-price", pid("inf"), literal("inf", "price", "Infinity"), "dead_letter"),
        raw("minus-infinity", pid("minf"), literal("minf", "price", "-Infinity"), "dead_letter"),
        raw("nan-updated-at", pid("nan-ts"), literal("nan-ts", "updated_at", "NaN"), "dead_letter"),
        # --- time ----------------------------------------------------------------------------
        keyed("unparseable-updated-at", _product(pid("ts"), updated_at="yesterday"), "dead_letter"),
        keyed(
            "updated-at-year-99999",
            _product(pid("y99999"), updated_at="99999-01-01T00:00:00Z"),
            "dead_letter",
        ),
        keyed(
            "updated-at-years-ahead",
            _product(pid("future"), updated_at=_future_ms(years=5)),
            "dead_letter",
        ),
        # --- text ----------------------------------------------------------------------------
        raw(
            "surrogate-title", pid("sur-title"), escaped("sur-title", "title", "\\ud800"), "either"
        ),
        raw(
            "surrogate-brand",
            pid("sur-brand"),
            escaped("sur-brand", "brand", "x\\udfffy"),
            "either",
        ),
        raw(
            "surrogate-extra-key",
            pid("sur-key"),
            f'{{"product_id": "{pid("sur-key")}", "extra": {{"\\udbff": 1}}}}'.encode(),
            "either",
        ),
        raw(
            "surrogate-in-id",
            surrogate_id.encode("utf-8", "surrogatepass"),
            f'{{"product_id": "{pid("surrogate-id")}\\ud800", "title": "x"}}'.encode(),
            "dead_letter",
        ),
        raw(
            "surrogate-utf8-bytes",
            pid("sur-bytes"),
            f'{{"product_id": "{pid("sur-bytes")}", "title": "'.encode() + b"\xed\xa0\x80" + b'"}',
            "dead_letter",
        ),
        raw(
            "invalid-utf8-value",
            pid("bad-utf8"),
            f'{{"product_id": "{pid("bad-utf8")}", "title": "caf'.encode() + b'\xe9"}',
            "dead_letter",
        ),
        keyed("nul-in-title", _product(pid("nul"), title="a\x00b\x07c"), "product"),
        keyed("title-900kb", _product(pid("t900"), title="shirt " * 153_600), "either"),
        raw(
            "garbage-850kb",
            pid("g850"),
            b'{"product_id": "' + b"z" * 850_000,  # unterminated: never valid JSON
            "dead_letter",
        ),
        # --- empty and not an object ------------------------------------------------------------
        raw("empty-value", pid("empty"), b"", "dead_letter"),
        raw("whitespace-only", pid("ws"), b" \t\r\n  ", "dead_letter"),
        raw("bom-only", pid("bom"), BOM, "dead_letter"),
        raw("bom-then-product", pid("bom-p"), BOM + _json(_product(pid("bom-p"))), "either"),
        raw("top-level-list", pid("list"), _json([_product(pid("list"))]), "dead_letter"),
        raw("top-level-string", pid("str"), b'"just a string"', "dead_letter"),
        raw("json-null", pid("null"), b"null", "dead_letter"),
        raw("truncated-object", pid("trunc"), _json(_product(pid("trunc")))[:-3], "dead_letter"),
        # --- keys --------------------------------------------------------------------------------
        raw("invalid-utf8-key", b"\xff\xfe\xfd", _json(_product(pid("badkey"))), "dead_letter"),
        raw("null-key-with-value", None, _json(_product(pid("nullkey"))), "dead_letter"),
        HostileMessage("tombstone-without-key", None, None, "dead_letter"),
        HostileMessage("tombstone-empty-key", b"", None, "dead_letter"),
        raw("key-mismatch", pid("other"), _json(_product(pid("mismatch"))), "dead_letter"),
        # --- schema ------------------------------------------------------------------------------
        keyed("schema-version-99", _product(pid("v99"), schema_version=99), "dead_letter"),
        keyed("schema-version-0", _product(pid("v0"), schema_version=0), "dead_letter"),
        raw("product-id-number", "12345", b'{"product_id": 12345, "title": "x"}', "dead_letter"),
        raw("product-id-missing", pid("noid"), b'{"title": "no id"}', "dead_letter"),
        keyed("product-id-blank", {"product_id": "   ", "title": "blank"}, "dead_letter"),
        keyed("product-id-too-long", _product(pid("long") + "x" * 300), "dead_letter"),
        keyed("title-is-a-list", _product(pid("tl"), title=["a", "b"]), "dead_letter"),
        keyed("price-is-an-object", _product(pid("po"), price={"amount": 1}), "dead_letter"),
        keyed("image-urls-object", _product(pid("iu"), image_urls={"a": 1}), "dead_letter"),
        keyed("unknown-op", _product(pid("op"), op="destroy"), "dead_letter"),
        keyed("extra-not-object", _product(pid("ex"), extra=[1, 2]), "dead_letter"),
        # --- ids that look like code: valid, and must touch only themselves -----------------------
        keyed("milvus-injection-delete", {"product_id": INJECTION_ID, "op": "delete"}, "delete"),
        keyed(
            "milvus-injection-delete-double-quote",
            {"product_id": INJECTION_ID_DOUBLE, "op": "delete"},
            "delete",
        ),
        keyed("quotes-in-id", _product(f"{p}-q'\"\\]) or ([-x"), "product"),
    ]
    return cases


def kcat_cases(prefix: str) -> list[HostileMessage]:
    """Cases sent with Debian's kcat (one file per message), as an operator would."""
    p = f"{prefix}-kcat"
    bodies = {
        # (kcat skips an empty file, so the empty message is sent with confluent-kafka only)
        "nan": b'{"product_id": "' + p.encode() + b'-nan", "price": NaN}',
        "ws": b"\n\n  \n",
        "bom": BOM + b"[]",
        "list": b"[1, 2, 3]",
        "utf8": b'{"product_id": "' + p.encode() + b'-utf8", "title": "\xc3\x28"}',
        "deep": b"[" * DEPTH,
    }
    return [
        HostileMessage(f"kcat-{name}", f"{p}-{name}".encode(), body, "dead_letter", via_kcat=True)
        for name, body in bodies.items()
    ]


def garbage(rng: random.Random, count: int) -> Iterator[HostileMessage]:
    """``count`` random messages, each invalid by construction (never a valid product)."""
    makers = (_random_bytes, _random_non_object, _object_without_id, _truncated_product)
    for index in range(count):
        maker = makers[index % len(makers)]
        key = _random_key(rng)
        yield HostileMessage(f"garbage-{maker.__name__.strip('_')}", key, maker(rng), "dead_letter")


def _random_key(rng: random.Random) -> bytes | None:
    roll = rng.random()
    if roll < 0.2:
        return None
    if roll < 0.4:
        return rng.randbytes(rng.randint(1, 24))
    return f"g{rng.getrandbits(48):x}".encode()


def _random_bytes(rng: random.Random) -> bytes:
    body = bytearray(rng.randbytes(rng.randint(0, 300)))
    body.insert(rng.randint(0, len(body)), 0xFF)  # 0xFF never occurs in UTF-8
    return bytes(body)


def _random_non_object(rng: random.Random) -> bytes:
    choices: list[object] = [
        rng.randint(-(10**12), 10**12),
        rng.random(),
        "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 40))),
        [rng.randint(0, 9) for _ in range(rng.randint(0, 10))],
        True,
        None,
    ]
    return _json(rng.choice(choices))


def _object_without_id(rng: random.Random) -> bytes:
    values: list[object] = [1, "x", None, [], {}]
    fields = {f"f{rng.randint(0, 99)}": rng.choice(values) for _ in range(5)}
    fields["title"] = f"No id {rng.getrandbits(32)}"
    return _json(fields)


def _truncated_product(rng: random.Random) -> bytes:
    whole = _json(_product(f"g{rng.getrandbits(40):x}", description="d" * rng.randint(0, 80)))
    return whole[: rng.randint(1, len(whole) - 1)]  # an object cut before its "}" never parses


VOCABULARY = (
    ("Red", "Blue", "Black", "White", "Green", "Grey", "Navy", "Pink"),
    ("cotton", "leather", "wool", "steel", "wooden", "ceramic", "linen", "rubber"),
    ("t-shirt", "running shoe", "backpack", "desk lamp", "coffee mug", "phone case", "scarf"),
)


def valid_product(product_id: str, rng: random.Random, updated_at: int) -> dict[str, object]:
    colour, material, noun = (rng.choice(words) for words in VOCABULARY)
    return {
        "product_id": product_id,
        "title": f"{colour} {material} {noun} {rng.randint(1, 999)}",
        "description": f"A {material} {noun} in {colour.lower()}.",
        "brand": rng.choice(("Acme", "Northwind", "Globex", "Initech")),
        "price": f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}",
        "currency": "EUR",
        "updated_at": updated_at,
    }


def valid_products(prefix: str, rng: random.Random, count: int) -> list[HostileMessage]:
    base = int(time.time() * 1000) - 86_400_000  # yesterday: never "in the future"
    out = []
    for index in range(count):
        product_id = f"{prefix}-ok-{index}"
        payload = valid_product(product_id, rng, base + index)
        out.append(
            HostileMessage("valid", product_id.encode(), _json(payload), "product", product_id)
        )
    return out
