"""The worker's HTTP API over real HTTP, against the real local stack.

Documents are written by the real Elasticsearch sink and vectors by the real
Milvus sink (records handed to them directly: Kafka is covered by the sink
tests), then every route is called through a real socket.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from catstream.metrics import EVENTS
from catstream.settings import Settings
from schemas.events import CategoryScore, NormalisedProduct, Prediction, ProductEmbedding
from schemas.vectors import encode_vector
from workers.api import build_api, run_api
from workers.elasticsearch_sink import ElasticsearchSink
from workers.milvus_collection import IMAGE_DIM, TEXT_DIM
from workers.milvus_sink import MilvusSink
from workers.similar import SimilarProducts
from workers.sink import SinkMessage

SHOES = ["Apparel & Accessories", "Shoes"]
BAGS = ["Apparel & Accessories", "Handbags"]
CATALOGUE = {
    "boot-1": ("Leather winter boot", "Acme", SHOES),
    "boot-2": ("Leather hiking boot", "Acme", SHOES),
    "boot-3": ("Suede ankle boot", "Trail", SHOES),
    "bag-1": ("Leather shoulder bag", "Acme", BAGS),
    "bag-2": ("Canvas tote bag", "Totes", BAGS),
}
IDS = {"Apparel & Accessories": 166, "Shoes": 187, "Handbags": 6551}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def record(topic: str, pid: str, event: Any, offset: int) -> SinkMessage:
    value = event.model_dump_json().encode()
    return SinkMessage(topic, 0, offset, pid.encode(), value, int(time.time() * 1000))


def categories(path: list[str]) -> list[CategoryScore]:
    return [
        CategoryScore(id=IDS[name], path=" > ".join(path[: i + 1]), score=0.9 - i / 10, level=i + 1)
        for i, name in enumerate(path)
    ]


def write_catalogue(settings: Settings, catalogue: dict[str, Any] = CATALOGUE) -> None:
    """The catalogue into Elasticsearch (products + predictions) and Milvus (vectors)."""
    es_sink, milvus_sink = ElasticsearchSink(settings), MilvusSink(settings)
    rng = random.Random(3)
    bases = {"Shoes": [rng.uniform(-1, 1) for _ in range(TEXT_DIM)]}
    bases["Handbags"] = [-x for x in bases["Shoes"]]
    for offset, (pid, (title, brand, path)) in enumerate(catalogue.items()):
        product = NormalisedProduct(
            product_id=pid, updated_at=1000, title=title, brand=brand, category_path=path
        )
        chain = categories(path)
        prediction = Prediction(
            product_id=pid,
            model_name="categoriser",
            model_version="7",
            categories=chain,
            top_category=chain[-1],
            confidence=0.8,
            uncertainty=0.1,
            needs_review=pid == "bag-2",
            fingerprint=f"fp-{pid}",
            updated_at=1000,
        )
        vector = [x + rng.uniform(-0.1, 0.1) for x in bases[path[-1]]]
        embedding = ProductEmbedding(
            product_id=pid,
            model_version="7",
            text_embedding=encode_vector(vector),
            image_embedding=encode_vector([rng.uniform(0, 1) for _ in range(IMAGE_DIM)]),
            category_ids=[c.id for c in chain],
            category_path=path,
            fingerprint=f"fp-{pid}",
            updated_at=1000,
        )
        es_sink.add(record(settings.topic("normalised"), pid, product, offset))
        es_sink.add(record(settings.topic("predictions"), pid, prediction, offset))
        milvus_sink.add(record(settings.topic("embeddings"), pid, embedding, offset))
    es_sink.flush()
    milvus_sink.flush()
    es_sink.client.indices.refresh(index=settings.elasticsearch_index)
    es_sink.close()
    milvus_sink.close()


@pytest.fixture
async def api(topic_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    await asyncio.to_thread(write_catalogue, topic_settings)
    app = build_api(topic_settings, similar=SimilarProducts(topic_settings))
    async with TestClient(TestServer(app)) as client:
        yield client


async def get(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
    response = await client.get(path)
    return response.status, await response.json()


# ------------------------------------------------------------------------- tests


async def test_health_is_ready_with_the_real_stack_over_a_real_port(stack: Settings) -> None:
    port = free_port()
    server = asyncio.create_task(run_api(stack, port))
    try:
        deadline = time.monotonic() + 60  # the server needs a moment to bind
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/health") as response:
                        status, body = response.status, await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline or server.done():
                        raise AssertionError(f"the API never listened on port {port}") from None
                    await asyncio.sleep(0.1)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    assert body["status"] == "ready", body
    assert status == 200
    assert set(body["checks"]) == {"process", "kafka", "triton", "milvus", "elasticsearch"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_health_is_degraded_naming_the_service_that_does_not_answer(
    stack: Settings,
) -> None:
    broken = stack.model_copy(update={"elasticsearch_url": f"http://127.0.0.1:{free_port()}"})
    async with TestClient(TestServer(build_api(broken))) as client:
        status, body = await get(client, "/health")
    assert status == 503
    assert body["status"] == "degraded"
    assert body["failed"] == ["elasticsearch"]
    assert "error" in body["checks"]["elasticsearch"]
    assert body["checks"]["kafka"]["ok"]
    assert body["checks"]["triton"]["ok"]


async def test_metrics_expose_catstream_metrics(stack: Settings) -> None:
    EVENTS.labels(stage="api_test", outcome="ok").inc(3)
    async with TestClient(TestServer(build_api(stack, health_checks={}))) as client:
        response = await client.get("/metrics")
        text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert 'catstream_events_total{outcome="ok",stage="api_test"} 3.0' in text
    assert "catstream_triton_request_seconds" in text
    assert "catstream_sink_version_conflicts_total" in text


async def test_prediction_lookup(api: TestClient[Any, Any]) -> None:
    status, body = await get(api, "/products/boot-1/prediction")
    assert status == 200
    assert body["category"] == "Apparel & Accessories > Shoes"
    assert body["category_ids"] == [166, 187]
    assert body["model_version"] == "7"
    assert body["needs_review"] is False

    status, body = await get(api, "/products/nope/prediction")
    assert status == 404
    assert "not in index" in body["error"]
    assert "consumer group" in body["error"]


async def test_text_search_and_category_filter(api: TestClient[Any, Any]) -> None:
    status, body = await get(api, "/search?q=leather")
    assert status == 200
    assert {p["product_id"] for p in body["products"]} == {"boot-1", "boot-2", "bag-1"}

    status, body = await get(
        api, "/search?q=leather&category=Apparel%20%26%20Accessories%20%3E%20Shoes"
    )
    assert {p["product_id"] for p in body["products"]} == {"boot-1", "boot-2"}

    status, body = await get(api, "/search?q=")
    assert status == 400
    assert "q=" in body["error"]
    status, body = await get(api, "/search?q=boot&size=many")
    assert status == 400
    assert "size" in body["error"]


async def test_more_like_this_respects_the_level(api: TestClient[Any, Any]) -> None:
    status, body = await get(api, "/products/boot-1/more-like-this?level=0")
    assert status == 200
    found = {p["product_id"] for p in body["products"]}
    assert "boot-1" not in found
    assert {"boot-2", "bag-1"} <= found  # "leather" and "Acme" are shared across categories

    status, body = await get(api, "/products/boot-1/more-like-this?level=2")
    assert {p["product_id"] for p in body["products"]} <= {"boot-2", "boot-3"}
    assert "boot-2" in {p["product_id"] for p in body["products"]}

    status, body = await get(api, "/products/nope/more-like-this")
    assert status == 404


async def test_similar_products_from_milvus(api: TestClient[Any, Any]) -> None:
    status, body = await get(api, "/products/boot-1/similar?k=10&level=2&by=text")
    assert status == 200, body
    assert {p["product_id"] for p in body["products"]} == {"boot-2", "boot-3"}

    status, body = await get(api, "/products/boot-1/similar?k=10&level=0")
    assert {p["product_id"] for p in body["products"]} == set(CATALOGUE) - {"boot-1"}

    status, body = await get(api, "/products/nope/similar")
    assert status == 404
    assert "nope" in body["error"]
    status, body = await get(api, "/products/boot-1/similar?by=smell")
    assert status == 400
    assert "by=" in body["error"]
    status, body = await get(api, "/products/boot-1/similar?k=ten")
    assert status == 400
    assert "?k=" in body["error"]


# Ids that are syntax somewhere (Milvus filters, URLs, ES paths): each is only an id.
HOSTILE = {
    "x'] or product_id not in ['": ("Leather boot one", "Acme", SHOES),
    'q" or product_id != "': ("Leather boot two", "Acme", SHOES),
    "back\\slash\\": ("Leather boot three", "Acme", SHOES),
    "{ids} [x] *?&#": ("Leather boot four", "Acme", SHOES),
    "a/../b%2F": ("Leather tote", "Totes", BAGS),
}


async def test_ids_with_syntax_round_trip_through_every_endpoint(topic_settings: Settings) -> None:
    catalogue = {**CATALOGUE, **HOSTILE}
    await asyncio.to_thread(write_catalogue, topic_settings, catalogue)
    app = build_api(topic_settings, similar=SimilarProducts(topic_settings))
    async with TestClient(TestServer(app)) as client:
        for pid, (_, _, path) in HOSTILE.items():
            quoted = urllib.parse.quote(pid, safe="")
            status, body = await get(client, f"/products/{quoted}/prediction")
            assert status == 200, (pid, body)
            assert body["product_id"] == pid
            assert body["category"] == " > ".join(path)

            status, body = await get(client, f"/products/{quoted}/similar?k=20&level=0")
            assert status == 200, (pid, body)
            assert {p["product_id"] for p in body["products"]} == set(catalogue) - {pid}

            status, body = await get(client, f"/products/{quoted}/more-like-this?level=0")
            assert status == 200, (pid, body)
            assert pid not in {p["product_id"] for p in body["products"]}

        crafted = urllib.parse.quote("x' or product_id not in ['", safe="")
        for route in ("prediction", "similar", "more-like-this"):
            status, body = await get(client, f"/products/{crafted}/{route}")
            assert status == 404, (route, body)


async def test_no_503_body_shows_a_credential_from_a_service_url(
    stack: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = f"pw-{uuid.uuid4().hex[:12]}"
    dead_es = f"http://elastic:{secret}@127.0.0.1:{free_port()}"
    broken = stack.model_copy(update={"elasticsearch_url": dead_es})
    broken = Settings(**{**broken.model_dump(), "elasticsearch_url": dead_es})  # registers it
    async with TestClient(TestServer(build_api(broken))) as client:
        responses = [await client.get(path) for path in ("/health", "/search?q=boot")]
        bodies = [await response.text() for response in responses]
    assert [r.status for r in responses] == [503, 503]
    for body in bodies:
        assert secret not in body
    assert "//***@127.0.0.1" in bodies[1]  # the URL is still named, without its password
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


async def test_the_api_binds_the_host_from_settings(stack: Settings) -> None:
    """0.0.0.0 (as in the manifests) answers on every local address, not only 127.0.0.1."""
    port = free_port()
    everywhere = stack.model_copy(update={"api_host": "0.0.0.0"})
    server = asyncio.create_task(run_api(everywhere, port, health_checks={}))
    deadline = time.monotonic() + 30
    try:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.2:{port}/health") as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline or server.done():
                        raise
                    await asyncio.sleep(0.1)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
