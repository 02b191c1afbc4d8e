"""The sink's scripted update agrees with ``plan_product`` on the real Elasticsearch API.

``plan_product`` (pure, unit-tested) is the rule book: field groups versioned apart,
stale and replayed events ignored, tombstones respected. The script applies the same
rules on the server, so the sink writes without reading. Random event sequences,
delivered in several flushes, must leave the same document both ways.
"""

from __future__ import annotations

import random
from typing import Any

from elasticsearch import Elasticsearch

from catstream.settings import Settings
from workers.elasticsearch_documents import (
    NormalisedUpsert,
    OfferUpdate,
    PredictionUpdate,
    SinkEvent,
)
from workers.elasticsearch_index import elasticsearch_client, ensure_indices
from workers.elasticsearch_plan import StoredProduct, plan_product
from workers.elasticsearch_script import script_update

PRODUCTS = 80


def _event(rng: random.Random) -> SinkEvent:
    version = rng.choice([10, 20, 20, 30])
    kind = rng.random()
    if kind < 0.5:
        fields: dict[str, Any] = {"product_id": "x", "title": f"t{version}", "updated_at": version}
        if rng.random() < 0.5:
            fields["brand"] = f"b{version}"
        return NormalisedUpsert(version, fields)
    if kind < 0.85:
        at = rng.choice([1, 2])
        prediction: dict[str, Any] = {"prediction": {"model_version": f"v{version}.{at}"}}
        if rng.random() < 0.7:
            prediction["category"] = {"path": f"A > {version}", "level": 2, "id": version}
        return PredictionUpdate((version, at), prediction)
    return OfferUpdate((version, rng.choice([1, 2])), {"offer_group": f"g{version}"})


def _planned(
    stored: dict[str, Any] | None, deleted_at: int | None, events: list[SinkEvent | None]
) -> dict[str, Any] | None:
    plan = plan_product("x", StoredProduct(source=stored, deleted_at=deleted_at), events)
    if plan.write is None:
        return stored
    return plan.write.source


def test_the_script_leaves_what_plan_product_plans(topic_settings: Settings) -> None:
    client: Elasticsearch = elasticsearch_client(topic_settings)
    ensure_indices(client, topic_settings)
    index = topic_settings.elasticsearch_index
    rng = random.Random(7)
    expected: dict[str, dict[str, Any] | None] = {}
    for n in range(PRODUCTS):
        pid = f"s{n}"
        deleted_at = rng.choice([None, None, 15])
        stored: dict[str, Any] | None = None
        for _flush in range(rng.randint(1, 3)):
            events: list[SinkEvent | None] = [_event(rng) for _ in range(rng.randint(1, 3))]
            for event in events:
                if isinstance(event, NormalisedUpsert):
                    event.fields["product_id"] = pid
            body = script_update(pid, events, deleted_at)
            assert body is not None
            response = client.bulk(
                operations=[{"update": {"_index": index, "_id": pid}}, body], refresh=True
            )
            assert not response["errors"], response["items"]
            stored = _planned(stored, deleted_at, events)
            if stored is not None:
                stored = {**stored, "product_id": pid}
        expected[pid] = stored
    found = client.mget(index=index, ids=list(expected))["docs"]
    actual = {doc["_id"]: doc["_source"] if doc.get("found") else None for doc in found}
    differ = {pid: (actual[pid], want) for pid, want in expected.items() if actual[pid] != want}
    assert not differ, f"{len(differ)} products differ (script, plan): {list(differ.items())[:3]}"
    assert any(doc is None for doc in expected.values()), "no tombstone case was exercised"
