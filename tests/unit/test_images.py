"""Image fetching: URL and address checks, limits, redirects and caches.

The HTTP tests run a real aiohttp server on loopback (no mocks); the fetcher is
allowed private addresses there except where the blocking itself is tested.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from catstream.settings import Settings
from streams.images import (
    DiskImageCache,
    FetchedImage,
    ImageFailure,
    ImageFetcher,
    _Refused,
    check_url,
    is_blocked_address,
    url_key,
)

MAX_BYTES = 50_000


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata endpoint
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 wrapping 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 wrapping 10.0.0.1
        "not-an-ip",
    ],
)
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert is_blocked_address(address) is True


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_blocked_address(address) is False


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.jpg", "unsupported_scheme"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("data:image/png;base64,AAAA", "unsupported_scheme"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("gopher://example.com/", "unsupported_scheme"),
        ("example.com/a.jpg", "unsupported_scheme"),
        ("http://", "bad_url"),
        ("http://user:secret@example.com/a.jpg", "bad_url"),
        ("http://example.com:99999/a.jpg", "bad_url"),
        ("http://127.0.0.1/a.jpg", "blocked_private_address"),
        ("http://[::1]:8080/a.jpg", "blocked_private_address"),
        ("https://169.254.169.254/latest/meta-data", "blocked_private_address"),
        ("http://[::ffff:192.168.0.1]/a.jpg", "blocked_private_address"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    with pytest.raises(_Refused) as refused:
        check_url(url, allow_private=False)
    assert refused.value.reason == reason


def test_allowed_urls() -> None:
    check_url("https://cdn.example.com/p/1.jpg?w=200", allow_private=False)
    check_url("http://8.8.8.8/a.png", allow_private=False)
    check_url("http://127.0.0.1:8080/a.png", allow_private=True)
    with pytest.raises(_Refused):
        check_url("ftp://127.0.0.1/a.png", allow_private=True)


def test_disk_cache_round_trip_and_eviction(tmp_path: Path) -> None:
    cache = DiskImageCache(tmp_path, max_bytes=2_500, ttl_s=3600)
    for index in range(5):
        cache.put(FetchedImage(f"http://x/{index}", bytes([index]) * 1000, "image/png"))
    stored = sorted(tmp_path.glob("??/*"))
    assert 1 <= len(stored) <= 2  # bounded: evicted down to 90% of max_bytes
    assert sum(p.stat().st_size for p in stored) <= 2_500
    latest = cache.get("http://x/4")
    assert latest == FetchedImage("http://x/4", bytes([4]) * 1000, "image/png", "disk")
    assert cache.get("http://x/0") is None
    assert (tmp_path / url_key("http://x/4")[:2] / url_key("http://x/4")).exists()


def test_disk_cache_expires(tmp_path: Path) -> None:
    cache = DiskImageCache(tmp_path, max_bytes=10_000, ttl_s=0.0)
    cache.put(FetchedImage("http://x/a", b"abc", "image/png"))
    assert cache.get("http://x/a") is None


class ImageServer:
    """A loopback HTTP server with routes for every fetch outcome; counts hits."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.image = png_bytes()
        self.port = 0
        self.missing_serves_image = False

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def app(self) -> web.Application:
        app = web.Application()
        app.middlewares.append(self._count)
        app.router.add_get("/img.png", self._image)
        app.router.add_get("/page.html", self._html)
        app.router.add_get("/big.png", self._big)
        app.router.add_get("/big-chunked.png", self._big_chunked)
        app.router.add_get("/slow.png", self._slow)
        app.router.add_get("/missing.png", self._missing)
        app.router.add_get("/redirect/{n}", self._redirect)
        app.router.add_get("/loop", self._loop)
        app.router.add_get("/to-ftp", self._to_ftp)
        return app

    @web.middleware
    async def _count(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.hits[request.path] += 1
        return await handler(request)

    async def _image(self, request: web.Request) -> web.Response:
        return web.Response(body=self.image, content_type="image/png")

    async def _html(self, request: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * (MAX_BYTES + 1), content_type="image/png")

    async def _big_chunked(self, request: web.Request) -> web.StreamResponse:
        # No Content-Length: the fetcher must stop reading once past the limit.
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(100):
                await response.write(b"\0" * 10_000)
        except (ConnectionResetError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return web.Response(body=self.image, content_type="image/png")

    async def _missing(self, request: web.Request) -> web.Response:
        if self.missing_serves_image:
            return web.Response(body=self.image, content_type="image/png")
        raise web.HTTPNotFound()

    async def _redirect(self, request: web.Request) -> web.Response:
        remaining = int(request.match_info["n"])
        target = "/img.png" if remaining <= 1 else f"/redirect/{remaining - 1}"
        raise web.HTTPFound(target)

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _to_ftp(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://127.0.0.1/img.png")


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    image_server = ImageServer()
    runner = web.AppRunner(image_server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    image_server.port = runner.addresses[0][1]
    yield image_server
    await runner.cleanup()


def make_settings(home: Path, *, allow_private: bool = True) -> Settings:
    return Settings(
        home=home,
        image_allow_private=allow_private,
        image_max_bytes=MAX_BYTES,
        image_fetch_timeout_s=0.5,
    )


@pytest.fixture
async def fetcher(tmp_path: Path) -> AsyncIterator[ImageFetcher]:
    async with ImageFetcher(make_settings(tmp_path)) as image_fetcher:
        yield image_fetcher


async def test_fetches_an_image(server: ImageServer, fetcher: ImageFetcher) -> None:
    result = await fetcher.fetch(server.url("/img.png"))
    assert isinstance(result, FetchedImage)
    assert (result.data, result.content_type, result.source) == (
        server.image,
        "image/png",
        "network",
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/page.html", "not_an_image"),
        ("/big.png", "too_large"),
        ("/big-chunked.png", "too_large"),
        ("/slow.png", "timeout"),
        ("/missing.png", "http_404"),
        ("/loop", "too_many_redirects"),
        ("/to-ftp", "unsupported_scheme"),
    ],
)
async def test_failures_carry_a_reason(
    server: ImageServer, fetcher: ImageFetcher, path: str, reason: str
) -> None:
    result = await fetcher.fetch(server.url(path))
    assert isinstance(result, ImageFailure)
    assert result.reason == reason


async def test_follows_a_few_redirects(server: ImageServer, fetcher: ImageFetcher) -> None:
    result = await fetcher.fetch(server.url("/redirect/3"))
    assert isinstance(result, FetchedImage)
    assert result.data == server.image
    assert server.hits["/img.png"] == 1


async def test_too_many_redirects_are_refused(server: ImageServer, fetcher: ImageFetcher) -> None:
    result = await fetcher.fetch(server.url("/redirect/5"))
    assert isinstance(result, ImageFailure)
    assert result.reason == "too_many_redirects"
    assert server.hits["/img.png"] == 0


async def test_connection_refused(fetcher: ImageFetcher) -> None:
    # Port 9 on loopback: nothing listens there in the test environment.
    result = await fetcher.fetch("http://127.0.0.1:9/img.png")
    assert isinstance(result, ImageFailure)
    assert result.reason == "connection_error"
    assert result.transient


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_blocked_unless_allowed(
    server: ImageServer, tmp_path: Path, host: str
) -> None:
    async with ImageFetcher(make_settings(tmp_path, allow_private=False)) as guarded:
        result = await guarded.fetch(server.url("/img.png", host=host))
    assert isinstance(result, ImageFailure)
    assert result.reason == "blocked_private_address"
    assert server.hits["/img.png"] == 0  # refused before connecting


async def test_memory_then_disk_cache(server: ImageServer, tmp_path: Path) -> None:
    url = server.url("/img.png")
    async with ImageFetcher(make_settings(tmp_path)) as first:
        assert (await first.fetch(url)).ok
        again = await first.fetch(url)
    async with ImageFetcher(make_settings(tmp_path)) as second:
        from_disk = await second.fetch(url)
    assert isinstance(again, FetchedImage)
    assert isinstance(from_disk, FetchedImage)
    assert (again.source, from_disk.source) == ("memory", "disk")
    assert from_disk.data == server.image
    assert server.hits["/img.png"] == 1


async def test_failures_are_cached_for_a_while(server: ImageServer, tmp_path: Path) -> None:
    url = server.url("/missing.png")
    async with ImageFetcher(make_settings(tmp_path), negative_ttl_s=0.3) as image_fetcher:
        assert (await image_fetcher.fetch(url)).ok is False
        server.missing_serves_image = True
        assert (await image_fetcher.fetch(url)).ok is False  # still the cached failure
        assert server.hits["/missing.png"] == 1
        await asyncio.sleep(0.35)
        assert (await image_fetcher.fetch(url)).ok is True
    assert server.hits["/missing.png"] == 2


async def test_concurrent_fetches_share_one_download(
    server: ImageServer, fetcher: ImageFetcher
) -> None:
    urls = [server.url("/img.png")] * 5 + [server.url("/page.html")]
    results = await fetcher.fetch_many(urls)
    assert [result.ok for result in results] == [True] * 5 + [False]
    assert server.hits["/img.png"] == 1
