"""Images as the stream handles them: fetched over HTTP, then embedded by Triton.

A real ``http.server`` on loopback (in a thread) serves generated pictures and a
few broken answers; the fetcher (allowed loopback, as the settings permit in
tests) downloads them concurrently and the stack's ``image_encoder`` embeds the
bytes. Every fetched image must embed like the in-process encoder; every broken
answer must come back as a failure with its reason, never an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from catstream.settings import Settings
from streams.images import FetchedImage, ImageFailure, ImageFetcher
from tests.unit.test_images import synthetic_images
from triton_models.image_encoder import ImageEncoder
from triton_models.triton_client import TritonClient

PICTURES = synthetic_images(6)
CONTENT_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"]


class PictureHandler(BaseHTTPRequestHandler):
    """``/p/<n>`` pictures, ``/broken`` (an image type, junk bytes), ``/page`` (HTML)."""

    def do_GET(self) -> None:
        if self.path.startswith("/p/"):
            index = int(self.path.removeprefix("/p/"))
            self._send(200, CONTENT_TYPES[index % 4], PICTURES[index])
        elif self.path == "/broken":
            self._send(200, "image/jpeg", b"\xff\xd8\xff\xe0 truncated")
        elif self.path == "/page":
            self._send(200, "text/html; charset=utf-8", b"<html>product page</html>")
        else:
            self._send(404, "text/plain", b"no such picture")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet


@pytest.fixture(scope="module")
def picture_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PictureHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_fetched_images_embed_like_in_process(
    stack: Settings, picture_server: str, tmp_path: Path
) -> None:
    settings = stack.model_copy(update={"home": tmp_path, "image_allow_private": True})
    urls = [f"{picture_server}/p/{index}" for index in range(len(PICTURES))]
    broken = {
        f"{picture_server}/page": "not_an_image",
        f"{picture_server}/missing.jpg": "http_404",
        "ftp://127.0.0.1/p/0": "unsupported_scheme",
    }

    async with ImageFetcher(settings) as fetcher:
        results = await fetcher.fetch_many([*urls, *broken, f"{picture_server}/broken"])

    fetched = results[: len(urls)]
    assert all(isinstance(result, FetchedImage) for result in fetched)
    assert [result.data for result in fetched if isinstance(result, FetchedImage)] == PICTURES
    failures = results[len(urls) : len(urls) + len(broken)]
    assert [f.reason for f in failures if isinstance(f, ImageFailure)] == list(broken.values())

    # The server sent a JPEG content type with junk: fetched, but Triton flags it.
    candidates = [r.data for r in results if isinstance(r, FetchedImage)]
    rows = np.array([[data] for data in candidates], dtype=np.object_)
    async with TritonClient(settings.triton_grpc_url, timeout_s=60.0, retries=2) as client:
        answer = await client.infer(
            settings.image_encoder_model, {"IMAGE": rows}, ["EMBEDDING", "OK"]
        )
    ok = answer["OK"].reshape(-1)
    assert ok.tolist() == [True] * len(PICTURES) + [False]

    expected, _ = ImageEncoder("torch", num_threads=2).encode_bytes(PICTURES)
    cosine = (answer["EMBEDDING"][: len(PICTURES)] * expected).sum(axis=1)
    assert cosine.min() > 1 - 1e-4


async def test_loopback_is_refused_without_the_setting(
    stack: Settings, picture_server: str, tmp_path: Path
) -> None:
    settings = stack.model_copy(update={"home": tmp_path, "image_allow_private": False})
    async with ImageFetcher(settings) as fetcher:
        result = await fetcher.fetch(f"{picture_server}/p/0")
    assert isinstance(result, ImageFailure)
    assert result.reason == "blocked_private_address"
