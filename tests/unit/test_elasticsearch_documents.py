"""Records → Elasticsearch sink events, document fields, and request pacing."""

from __future__ import annotations

from typing import Any

import pytest

from catstream.errors import InvalidMessage
from catstream.settings import Settings
from catstream.taxonomy import PATH_ID_BITS, PATH_ID_OFFSET
from schemas.events import CategoryScore, NormalisedProduct, Prediction
from workers.elasticsearch_documents import (
    NormalisedUpsert,
    PredictionUpdate,
    ProductDelete,
    category_fields,
    decode,
)
from workers.elasticsearch_index import PRODUCT_PROPERTIES
from workers.elasticsearch_plan import ProductPlan, StoredProduct, plan_product
from workers.elasticsearch_sink import ElasticsearchSink, RequestPacer
from workers.sink import SinkMessage

NORMALISED, PREDICTIONS = "t.products.normalised", "t.products.predictions"


def message(topic: str, key: str | None, value: bytes | None, ts: int = 5000) -> SinkMessage:
    return SinkMessage(topic, 0, 3, key.encode() if key else None, value, ts)


def shoe_prediction(updated_at: int | None) -> Prediction:
    root = CategoryScore(id=1, path="Apparel", score=0.9, level=1)
    leaf = CategoryScore(id=4, path="Apparel > Shoes", score=0.7, level=2)
    return Prediction(
        product_id="p1",
        model_name="categoriser",
        model_version="3",
        categories=[root, leaf],
        top_category=leaf,
        confidence=0.7,
        uncertainty=0.2,
        needs_review=True,
        fingerprint="fp",
        updated_at=updated_at,
        predicted_at=99,
    )


def test_category_fields_give_every_level_as_a_full_path() -> None:
    expected = {"path": "A > B > C", "level": 3, "l1": "A", "l2": "A > B", "l3": "A > B > C"}
    assert expected == category_fields(["A", " B ", "C"])


def test_normalised_upsert_carries_fields_and_updated_at_version() -> None:
    product = NormalisedProduct(
        product_id="p1", updated_at=1234, title="Boot", category_path=["A", "B"], raw={"x": 1}
    )
    event = decode(
        message(NORMALISED, "p1", product.model_dump_json().encode()), NORMALISED, PREDICTIONS
    )
    assert isinstance(event, NormalisedUpsert)
    assert event.version == 1234
    assert event.fields["title"] == "Boot"
    assert event.fields["raw"] == {"x": 1}
    assert event.fields["feed_category"]["path"] == "A > B"


def test_missing_updated_at_falls_back_to_the_kafka_timestamp() -> None:
    product = NormalisedProduct(product_id="p1", title="Boot")
    event = decode(
        message(NORMALISED, "p1", product.model_dump_json().encode()), NORMALISED, PREDICTIONS
    )
    assert isinstance(event, NormalisedUpsert)
    assert event.version == 5000


def test_delete_without_time_is_unversioned() -> None:
    product = NormalisedProduct(product_id="p1", op="delete")
    value = product.model_dump_json().encode()
    assert ProductDelete(None) == decode(message(NORMALISED, "p1", value), NORMALISED, PREDICTIONS)
    assert ProductDelete(None) == decode(message(NORMALISED, "p1", None), NORMALISED, PREDICTIONS)


def test_prediction_maps_top_category_and_ids() -> None:
    value = shoe_prediction(777).model_dump_json().encode()
    event = decode(message(PREDICTIONS, "p1", value), NORMALISED, PREDICTIONS)
    assert isinstance(event, PredictionUpdate)
    assert event.version == (777, 99)
    assert event.fields["category"]["ids"] == [1, 4]
    assert event.fields["category"]["l2"] == "Apparel > Shoes"
    assert event.fields["prediction"]["needs_review"] is True
    assert event.fields["prediction"]["score"] == 0.7


def test_prediction_tombstone_needs_no_write() -> None:
    assert None is decode(message(PREDICTIONS, "p1", None), NORMALISED, PREDICTIONS)


@pytest.mark.parametrize(
    ("topic", "key", "value", "says"),
    [
        (NORMALISED, None, b"{}", "no key"),
        (NORMALISED, "p1", b"not json", "not a valid NormalisedProduct"),
        (
            NORMALISED,
            "p2",
            NormalisedProduct(product_id="p1").model_dump_json().encode(),
            "differs",
        ),
        ("elsewhere", "p1", b"{}", "not one the Elasticsearch sink reads"),
    ],
)
def test_bad_records_are_invalid_with_a_reason(
    topic: str, key: str | None, value: bytes, says: str
) -> None:
    with pytest.raises(InvalidMessage, match=says):
        decode(message(topic, key, value), NORMALISED, PREDICTIONS)


def test_pacer_spaces_requests_by_the_rate() -> None:
    now = [100.0]
    pacer = RequestPacer(4.0, clock=lambda: now[0])
    assert [pacer.delay() for _ in range(3)] == [0.0, 0.25, 0.5]
    now[0] = 200.0
    assert pacer.delay() == 0.0


def test_bulk_results_keep_only_the_failed_products_buffered() -> None:
    settings = Settings(topic_prefix="t.", elasticsearch_url="http://127.0.0.1:9")
    sink = ElasticsearchSink(settings)
    for pid in ("ok", "busy", "raced", "misfit"):
        value = NormalisedProduct(product_id=pid, updated_at=1).model_dump_json().encode()
        sink.add(message(NORMALISED, pid, value))
    plans = [
        plan_product(pid, StoredProduct(), [NormalisedUpsert(1, {})]) for pid in sink_ids(sink)
    ]
    actions: list[tuple[ProductPlan, str, list[dict[str, Any]]]] = [
        (plan, "create", []) for plan in plans
    ]
    results: list[dict[str, Any]] = [
        {"status": 201},
        {
            "status": 429,
            "error": {"type": "es_rejected_execution_exception", "reason": "queue full"},
        },
        {"status": 409, "error": {"type": "version_conflict_engine_exception"}},
        {"status": 400, "error": {"type": "document_parsing_exception", "reason": "bad price"}},
    ]
    retry_now, failures = sink._apply_results(plans, actions, results)
    assert retry_now  # the 409 is re-read and re-planned at once
    assert failures == ["busy: es_rejected_execution_exception: queue full"]
    assert sink_ids(sink) == ["busy", "raced"]
    # The refused document is handed to the runner by the next flush (nothing pending now
    # but the two retried products, so flush the refusals alone).
    sink._pending.clear()
    refused = sink.flush()
    assert [r.message.product_id for r in refused] == ["misfit"]
    assert "bad price" in refused[0].error.reason
    assert sink.flush() == []  # handed over once
    sink.close()


def sink_ids(sink: ElasticsearchSink) -> list[str]:
    return list(sink._pending)


def test_category_id_fields_hold_every_stable_id_a_taxonomy_gives() -> None:
    # Before: "integer" fields refused every document of a model trained on a plain-format
    # taxonomy (48-bit path ids), and each was dead-lettered as a MappingError.
    es_max = {"integer": 2**31 - 1, "long": 2**63 - 1}
    largest = PATH_ID_OFFSET + (1 << PATH_ID_BITS) - 1
    for name in ("category", "feed_category"):
        fields = PRODUCT_PROPERTIES[name]["properties"]
        assert es_max[fields["id"]["type"]] >= largest
        assert es_max[fields["ids"]["type"]] >= largest
