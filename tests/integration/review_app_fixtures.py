"""Shared by the review app's integration tests: review items on Kafka, a served app."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp.test_utils import TestClient
from confluent_kafka import Producer
from PIL import Image

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from catstream.taxonomy import load_taxonomy
from schemas.events import CategoryScore, ReviewItem

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [
    "Toys & Games > Toys > Building Toys",
    "Toys & Games > Games > Board Games",
    "Toys & Games > Toys > Dolls, Playsets & Toy Figures",
    "Toys & Games > Puzzles",
    "Arts & Entertainment > Hobbies & Creative Arts > Arts & Crafts",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (160, 120), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def review_items(settings: Settings, image_base: str | None, count: int = 3) -> list[ReviewItem]:
    taxonomy = load_taxonomy(settings.taxonomy_path)
    candidates = [
        CategoryScore(
            id=taxonomy.resolve(path),
            path=path,
            score=round(0.34 - 0.06 * rank, 2),
            level=taxonomy.level(taxonomy.resolve(path)),
        )
        for rank, path in enumerate(CANDIDATES)
    ]
    titles = [
        "LEGO Classic Creative Bricks Box 484 pieces",
        "Wooden Play Kitchen with Oven, Sink and Utensils",
        "Family Strategy Board Game for 2-6 Players",
        "Unicorn Jigsaw Puzzle 1000 pieces",
    ]
    now = int(time.time() * 1000)
    return [
        ReviewItem(
            product_id=f"toy-{index}",
            uncertainty=0.9,
            measure="margin",
            candidates=candidates,
            model_version="1",
            fingerprint=f"fp-{index}",
            title=titles[index % len(titles)],
            description="Sent by the review app's integration test. <b>not bold</b>",
            brand="Acme <Toys>",
            merchant="Toy Shop UK",
            price="19.99",
            currency="GBP",
            raw_category="Toys > Misc",
            image_urls=[f"{image_base}/{index}.png"] if image_base else [],
            created_at=now - (count - index) * 1000,  # toy-0 is the oldest
            random_sample=index == 0,
        )
        for index in range(count)
    ]


async def page_shows(client: TestClient[Any, Any], path: str, marker: str, what: str) -> None:
    """Poll ``path`` until its HTML contains ``marker``; fail naming ``what`` was awaited."""
    for _ in range(600):  # condition polling, bounded: the feed reads Kafka in a thread
        if marker in await (await client.get(path)).text():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never showed {what}")


async def queue_depth(client: TestClient[Any, Any], depth: int) -> None:
    await page_shows(client, "/review/queue", f'data-depth="{depth}"', f"{depth} items queued")


def publish_items(settings: Settings, items: list[ReviewItem]) -> None:
    producer = Producer(librdkafka_config(settings))
    for item in items:
        producer.produce(
            settings.topic("review"), key=item.product_id.encode(), value=item.model_dump_json()
        )
    assert producer.flush(30) == 0, "Kafka did not acknowledge the review items"


@dataclass(frozen=True)
class ServedApp:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def serve_review_app(settings: Settings, home: Path, **extra_env: str) -> Iterator[ServedApp]:
    """``catstream review serve`` in a process of its own, on a free port."""
    port = free_port()
    env = {**os.environ, **settings.as_env(), **extra_env}
    env["CATSTREAM_REVIEW_LEASE_DB"] = str(home / "leases.sqlite")
    log = home / "review-serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "catstream.cli", "review", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/review", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"catstream review serve never answered:\n{log.read_text()}")
            time.sleep(0.2)
        yield ServedApp(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_depth(url: str, depth: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(f"{url}/review/queue", timeout=10).text
        if f'data-depth="{depth}"' in text:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the queue never held {depth} items:\n{text}")
        time.sleep(0.2)
