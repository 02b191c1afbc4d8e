"""The review app's HTTP side on the real stack: hostile input, the SSRF-safe image proxy,
and a restart that keeps leases and rebuilds the queue from Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from catstream.settings import Settings
from streams.review_server import review_image_fetcher
from streams.topics import create_topics
from tests.integration.review_app_fixtures import publish_items, queue_depth, review_items
from workers.api import build_api


def app_settings(settings: Settings, home: Path) -> Settings:
    return settings.model_copy(update={"review_lease_db": home / "leases.sqlite"})


@pytest.fixture
async def client(topic_settings: Settings, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = app_settings(topic_settings, tmp_path)
    await asyncio.to_thread(create_topics, settings)
    items = review_items(settings, "http://127.0.0.1:9", count=2)  # a private address
    await asyncio.to_thread(publish_items, settings, items)
    app = build_api(settings, images=review_image_fetcher(settings))
    async with TestClient(TestServer(app)) as test_client:
        await queue_depth(test_client, 2)
        yield test_client


HOSTILE = ["", " ", "<script>alert(1)</script>", "x" * 5000, "\x00", "../../etc/passwd", "1e9"]


async def assert_refused(response: Any, *statuses: int) -> None:
    text = await response.text()
    assert response.status in statuses, (response.status, text[:500])
    assert "Traceback" not in text
    assert "<script>alert" not in text


async def test_hostile_input_gets_a_readable_4xx_never_a_500(
    client: TestClient[Any, Any],
) -> None:
    # Without a name, answers are refused.
    response = await client.post("/review/answer", data={"product_id": "toy-0", "choice": "1"})
    await assert_refused(response, 400)
    assert "name" in await response.text()
    for name in HOSTILE[:-1]:  # "1e9" is a fine name
        await assert_refused(await client.post("/review/name", data={"labeller": name}), 400)
    client.session.cookie_jar.update_cookies({"catstream_labeller": "<script>alert(1)</script>"})
    await assert_refused(await client.post("/review/skip", data={"product_id": "toy-0"}), 400)
    response = await client.post("/review/name", data={"labeller": "eve"}, allow_redirects=False)
    assert response.status == 303
    page = await (await client.get("/review")).text()
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert "Acme &lt;Toys&gt;" in page
    for value in HOSTILE:
        for field in ("choice", "category", "verdict"):
            response = await client.post(
                "/review/answer", data={"product_id": "toy-0", field: value}
            )
            await assert_refused(response, 400)
        response = await client.post("/review/answer", data={"product_id": value, "choice": "1"})
        await assert_refused(response, 400, 404)
        response = await client.post("/review/skip", data={"product_id": value})
        await assert_refused(response, 400, 404)
    for choice in ("0", "6", "-1", "1.5", "١"):
        response = await client.post(
            "/review/answer", data={"product_id": "toy-0", "choice": choice}
        )
        await assert_refused(response, 400)
    both = {"product_id": "toy-0", "choice": "1", "verdict": "cant_tell"}
    await assert_refused(await client.post("/review/answer", data=both), 400)
    huge = {"product_id": "toy-0", "category": "x" * 3_000_000}
    await assert_refused(await client.post("/review/answer", data=huge), 413)
    await assert_refused(await client.post("/review/answer", data=b"\xff" * 1000), 400)
    for query in ("x" * 1000,):
        await assert_refused(await client.get("/review/taxonomy", params={"q": query}), 400)
    for limit in ("abc", "0", "100000", "-5"):
        response = await client.get("/review/taxonomy", params={"q": "toys", "limit": limit})
        await assert_refused(response, 400)
        assert "limit" in (await response.json())["error"]
    for url in ["", "file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "x" * 5000]:
        await assert_refused(await client.get("/review/image", params={"url": url}), 400, 404)
    for product in ("x" * 300, "no-such-product", "%3Cscript%3E"):
        await assert_refused(await client.get(f"/review/products/{product}"), 400, 404)
    await assert_refused(await client.get("/review/no-such-page"), 404)
    await assert_refused(await client.put("/review/answer"), 405)


async def test_the_image_proxy_applies_the_fetchers_ssrf_rules(
    client: TestClient[Any, Any],
) -> None:
    await client.post("/review/name", data={"labeller": "eve"})
    page = await (await client.get("/review")).text()
    assert "/review/image?url=http%3A%2F%2F127.0.0.1%3A9%2F0.png" in page
    response = await client.get("/review/image", params={"url": "http://127.0.0.1:9/0.png"})
    await assert_refused(response, 502)
    assert "blocked_private_address" in await response.text()


async def test_leases_survive_a_restart_and_the_queue_is_rebuilt_from_kafka(
    topic_settings: Settings, tmp_path: Path
) -> None:
    settings = app_settings(topic_settings, tmp_path)
    await asyncio.to_thread(create_topics, settings)
    await asyncio.to_thread(publish_items, settings, review_items(settings, None, count=2))
    async with TestClient(TestServer(build_api(settings))) as ann:
        await queue_depth(ann, 2)
        await ann.post("/review/name", data={"labeller": "ann"})
        assert 'data-product-id="toy-0"' in await (await ann.get("/review")).text()
    # A new process: the queue comes back from Kafka, ann's lease from SQLite.
    async with TestClient(TestServer(build_api(settings))) as bob:
        await queue_depth(bob, 2)
        await bob.post("/review/name", data={"labeller": "bob"})
        page = await (await bob.get("/review")).text()
        assert 'id="card" data-product-id="toy-1"' in page
        assert "ann" in await (await bob.get("/review/queue")).text()
