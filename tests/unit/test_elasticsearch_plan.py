"""The Elasticsearch sink's write planning: versions per field group, tombstones, replays."""

from __future__ import annotations

from typing import Any

from workers.elasticsearch_documents import (
    NormalisedUpsert,
    PredictionUpdate,
    ProductDelete,
    SinkEvent,
)
from workers.elasticsearch_plan import StoredProduct, plan_product


def upsert(version: int, title: str = "t") -> NormalisedUpsert:
    return NormalisedUpsert(version, {"product_id": "p", "title": title})


def prediction(version: int, at: int = 1, category: str = "A") -> PredictionUpdate:
    return PredictionUpdate((version, at), {"category": {"path": category}, "prediction": {}})


def stored_doc(
    normalised: int | None, predicted: int | None = None, **fields: Any
) -> StoredProduct:
    source: dict[str, Any] = {"product_id": "p", **fields}
    source["versions"] = {"normalised": normalised, "prediction": predicted, "prediction_at": 1}
    return StoredProduct(source=source, seq_no=7, primary_term=1)


def plan(stored: StoredProduct, *events: SinkEvent | None) -> Any:
    return plan_product("p", stored, list(events))


def test_new_product_is_created_with_its_version() -> None:
    result = plan(StoredProduct(), upsert(10, "v10"))
    assert result.write is not None
    assert result.write.kind == "create"
    assert result.write.source["title"] == "v10"
    assert result.write.source["versions"]["normalised"] == 10


def test_older_update_in_the_same_batch_does_not_regress() -> None:
    result = plan(StoredProduct(), upsert(20, "v20"), upsert(10, "v10"))
    assert result.write.source["title"] == "v20"
    assert (result.applied, result.stale) == (1, 1)


def test_older_update_than_stored_is_stale_and_writes_nothing() -> None:
    result = plan(stored_doc(20, title="v20"), upsert(10, "v10"))
    assert result.write is None
    assert result.stale == 1


def test_replay_of_the_stored_version_is_a_no_op() -> None:
    result = plan(stored_doc(20, title="v20"), upsert(20, "v20"))
    assert not result.has_writes


def test_newer_update_keeps_the_stored_prediction_and_is_conditional() -> None:
    stored = stored_doc(10, 10, title="old", category={"path": "A > B"}, prediction={"x": 1})
    result = plan(stored, upsert(20, "new"))
    assert result.write.kind == "index"
    assert (result.write.seq_no, result.write.primary_term) == (7, 1)
    assert result.write.source["category"] == {"path": "A > B"}
    assert result.write.source["title"] == "new"


def test_prediction_keeps_the_stored_normalised_fields() -> None:
    result = plan(stored_doc(10, title="kept"), prediction(10, category="A > C"))
    assert result.write.source["title"] == "kept"
    assert result.write.source["category"] == {"path": "A > C"}
    assert result.write.source["versions"]["prediction"] == 10


def test_older_prediction_is_stale() -> None:
    result = plan(stored_doc(10, 20), prediction(15))
    assert result.write is None
    assert result.stale == 1


def test_prediction_before_its_product_creates_a_prediction_only_doc() -> None:
    result = plan(StoredProduct(), prediction(5))
    assert result.write.kind == "create"
    assert None is result.write.source["versions"]["normalised"]


def test_delete_removes_the_doc_and_records_a_tombstone() -> None:
    result = plan(stored_doc(10, 10), ProductDelete(20))
    assert result.write.kind == "delete"
    assert result.tombstone == 20


def test_delete_older_than_the_doc_is_ignored() -> None:
    result = plan(stored_doc(30), ProductDelete(20))
    assert not result.has_writes
    assert result.stale == 1


def test_delete_before_the_upsert_arrives_blocks_the_older_upsert() -> None:
    deleted = plan(StoredProduct(), ProductDelete(20))
    assert deleted.write is None
    assert deleted.tombstone == 20
    late = plan(StoredProduct(deleted_at=20), upsert(10), prediction(10))
    assert not late.has_writes
    assert late.stale == 2


def test_product_recreated_after_delete_is_written() -> None:
    result = plan(StoredProduct(deleted_at=20), upsert(30, "back"))
    assert result.write.kind == "create"
    assert None is result.tombstone


def test_unversioned_delete_removes_whatever_is_stored() -> None:
    result = plan(stored_doc(50, 60), ProductDelete(None))
    assert result.write.kind == "delete"
    assert result.tombstone == 60


def test_ignored_events_are_counted_apart() -> None:
    result = plan(StoredProduct(), None, upsert(1))
    assert result.ignored == [0]
    assert result.applied == 1
