"""Embedding events → Milvus rows, and the last-event-wins buffer (no Milvus needed)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from catstream.errors import InvalidMessage
from catstream.settings import Settings
from schemas.events import ProductEmbedding
from workers.milvus_collection import (
    CATEGORY_PATH_MAX,
    CollectionSpec,
    build_index_params,
)
from workers.milvus_sink import MilvusSink, embedding_row, fit_utf8, is_older, parse_message
from workers.sink import SinkMessage

SPEC = CollectionSpec(name="unit", text_dim=4, image_dim=3)


def event(product_id: str = "p1", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "product_id": product_id,
        "model_version": "m1",
        "text_embedding": [0.1, 0.2, 0.3, 0.4],
        "image_embedding": [1.0, 0.0, 0.5],
        "category_ids": [10, 20, 30],
        "category_path": ["A", "B", "C"],
        "fingerprint": "f",
        "updated_at": 1234,
    }
    values.update(overrides)
    return values


def message(key: str | None, value: dict[str, Any] | bytes | None, offset: int = 0) -> SinkMessage:
    body = json.dumps(value).encode() if isinstance(value, dict) else value
    return SinkMessage(
        topic="t",
        partition=0,
        offset=offset,
        key=key.encode() if key is not None else None,
        value=body,
        timestamp_ms=0,
    )


def test_row_pads_category_levels_and_joins_path() -> None:
    row = embedding_row(ProductEmbedding(**event()), SPEC)
    assert [row[f"cat_l{i}"] for i in range(1, 8)] == [10, 20, 30, 0, 0, 0, 0]
    assert row["category_path"] == "A > B > C"
    assert row["has_image"] is True
    assert row["updated_at"] == 1234
    assert row["model_version"] == "m1"


def test_row_without_image_gets_zero_vector_and_flag() -> None:
    row = embedding_row(ProductEmbedding(**event(image_embedding=None)), SPEC)
    assert row["image_vector"] == [0.0, 0.0, 0.0]
    assert row["has_image"] is False


@pytest.mark.parametrize(
    ("overrides", "error_class"),
    [
        ({"text_embedding": [0.1, 0.2]}, "EmbeddingDimension"),
        ({"image_embedding": [0.1, 0.2, 0.3, 0.4]}, "EmbeddingDimension"),
        ({"text_embedding": [0.1, math.nan, 0.1, 0.1]}, "EmbeddingNotFinite"),
        ({"text_embedding": [0.0, 0.0, 0.0, 0.0]}, "EmbeddingZero"),
        ({"category_ids": list(range(1, 9))}, "CategoryTooDeep"),
        ({"category_ids": [1, 0]}, "CategoryId"),
        ({"model_version": "v" * 129}, "FieldTooLong"),
        ({"product_id": "p1" + "é" * 128}, "FieldTooLong"),  # 258 bytes, 130 characters
        ({"updated_at": 2**63}, "UpdatedAtRange"),
    ],
)
def test_unwritable_embeddings_are_invalid(overrides: dict[str, Any], error_class: str) -> None:
    with pytest.raises(InvalidMessage) as raised:
        embedding_row(ProductEmbedding(**event(**overrides)), SPEC)
    assert raised.value.error_class == error_class
    assert "p1" in raised.value.reason


def test_long_category_paths_are_cut_on_a_character_boundary() -> None:
    assert fit_utf8("abé", 3) == "ab"
    row = embedding_row(ProductEmbedding(**event(category_path=["é" * 1500])), SPEC)
    assert len(row["category_path"].encode()) <= CATEGORY_PATH_MAX
    assert row["category_path"] == "é" * (CATEGORY_PATH_MAX // 2)


def test_tombstone_deletes_by_key() -> None:
    assert parse_message(message("p9", None), SPEC) == ("p9", None)


@pytest.mark.parametrize(
    ("key", "value", "error_class"),
    [
        (None, None, "TombstoneWithoutKey"),
        ("p1", b"not json", "InvalidEmbeddingEvent"),
        ("p1", {"product_id": "p1"}, "InvalidEmbeddingEvent"),
        ("other", event("p1"), "KeyMismatch"),
    ],
)
def test_invalid_messages_say_what_to_do(
    key: str | None, value: dict[str, Any] | bytes | None, error_class: str
) -> None:
    with pytest.raises(InvalidMessage) as raised:
        parse_message(message(key, value), SPEC)
    assert raised.value.error_class == error_class
    assert ":" in raised.value.reason  # every reason ends with what to do


def test_last_event_per_product_wins_within_a_batch() -> None:
    sink = MilvusSink(Settings(milvus_collection="unit"), SPEC)
    sink.add(message("a", event("a"), 0))
    sink.add(message("a", None, 1))  # delete after upsert → delete
    sink.add(message("b", None, 2))
    sink.add(message("b", event("b", model_version="m2"), 3))  # upsert after delete → upsert
    sink.add(message("c", event("c", model_version="old"), 4))
    sink.add(message("c", event("c", model_version="new"), 5))
    pending = sink.pending
    assert pending["a"] is None
    assert pending["b"] is not None
    assert pending["b"]["model_version"] == "m2"
    assert pending["c"] is not None
    assert pending["c"]["model_version"] == "new"
    assert list(pending) == ["a", "b", "c"]


def test_unknown_index_type_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="FLAT, IVF_FLAT, HNSW"):
        build_index_params(CollectionSpec(name="x", index_type="DISKANN"))


def test_an_older_event_does_not_displace_a_newer_one_within_a_batch() -> None:
    sink = MilvusSink(Settings(milvus_collection="unit"), SPEC)
    sink.add(message("a", event("a", updated_at=2000, model_version="newer"), 0))
    sink.add(message("a", event("a", updated_at=1000, model_version="older"), 1))
    sink.add(message("b", event("b", updated_at=1000, model_version="first"), 2))
    sink.add(message("b", event("b", updated_at=1000, model_version="replay"), 3))
    pending = sink.pending
    assert pending["a"] is not None
    assert pending["a"]["model_version"] == "newer"
    assert pending["b"] is not None
    assert pending["b"]["model_version"] == "replay"


def test_is_older_only_when_strictly_older_than_the_current_version() -> None:
    row = embedding_row(ProductEmbedding.model_validate(event("a", updated_at=1000)), SPEC)
    assert is_older(row, 1001)
    assert not is_older(row, 1000)
    assert not is_older(row, 999)
    assert not is_older(row, None)
