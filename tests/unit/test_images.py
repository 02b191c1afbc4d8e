"""Product images: fetching (URL and address checks, limits, redirects, caches) and encoding.

The HTTP tests run a real aiohttp server on loopback (no mocks); the fetcher is
allowed private addresses there except where the blocking itself is tested.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from aiohttp import web
from PIL import Image, ImageDraw

from catstream.settings import Settings
from streams import images as images_module
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
from triton_models.image_encoder import EMBEDDING_DIM, ImageEncoder, image_to_pixels, preprocess
from triton_models.image_encoder.export import export_onnx

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
        self.answer_slow = asyncio.Event()  # /slow.png answers only once the test is over

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
        await self.answer_slow.wait()
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
    image_server.answer_slow.set()
    await runner.cleanup()


def make_settings(home: Path, *, allow_private: bool = True) -> Settings:
    return Settings(
        home=home,
        image_allow_private=allow_private,
        image_max_bytes=MAX_BYTES,
        # Generous: a loopback answer must never time out on a busy machine. The
        # timeout test uses a server that does not answer at all.
        image_fetch_timeout_s=30.0,
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


async def test_a_server_that_never_answers_times_out(server: ImageServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(update={"image_fetch_timeout_s": 0.5})
    async with ImageFetcher(settings) as image_fetcher:
        result = await image_fetcher.fetch(server.url("/slow.png"))
    assert isinstance(result, ImageFailure)
    assert result.reason == "timeout"


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


class SteppedClock:
    """``streams.images``' view of ``time``, with a monotonic clock the test moves on."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


async def test_failures_are_cached_for_a_while(
    server: ImageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The TTL passes when the test says so, not when a busy machine gets round to it.
    clock = SteppedClock()
    monkeypatch.setattr(images_module, "time", clock)
    url = server.url("/missing.png")
    async with ImageFetcher(make_settings(tmp_path), negative_ttl_s=300) as image_fetcher:
        assert (await image_fetcher.fetch(url)).ok is False
        server.missing_serves_image = True
        clock.offset_s = 299
        assert (await image_fetcher.fetch(url)).ok is False  # still the cached failure
        assert server.hits["/missing.png"] == 1
        clock.offset_s = 301
        assert (await image_fetcher.fetch(url)).ok is True
    assert server.hits["/missing.png"] == 2


async def test_concurrent_fetches_share_one_download(
    server: ImageServer, fetcher: ImageFetcher
) -> None:
    urls = [server.url("/img.png")] * 5 + [server.url("/page.html")]
    results = await fetcher.fetch_many(urls)
    assert [result.ok for result in results] == [True] * 5 + [False]
    assert server.hits["/img.png"] == 1


# --- the encoder (in-process) -------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def synthetic_images(count: int) -> list[bytes]:
    """Varied test pictures: solid colours, gradients and shapes, in several formats."""
    formats = ["JPEG", "PNG", "WEBP", "GIF"]
    images = []
    for index in range(count):
        width, height = 160 + 37 * (index % 5), 120 + 23 * (index % 7)
        gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        base = np.broadcast_to(gradient, (height, width, 3)).copy()
        base[..., index % 3] = (index * 53) % 256
        picture = Image.fromarray(base.astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(picture)
        offset = (index * 13) % 60
        shape_colour = ((index * 91) % 256, (index * 47) % 256, (index * 29) % 256)
        if index % 2:
            draw.ellipse((10 + offset, 10, 90 + offset, 90), fill=shape_colour)
        else:
            draw.rectangle((20, 5 + offset, 120, 60 + offset), fill=shape_colour)
        images.append(encode(picture, formats[index % len(formats)]))
    return images


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tmp_path_factory.mktemp("image-encoder") / "model.onnx")


@pytest.fixture(scope="module")
def torch_encoder() -> ImageEncoder:
    return ImageEncoder("torch", num_threads=2)


@pytest.fixture(scope="module")
def onnx_encoder(onnx_file: Path) -> ImageEncoder:
    return ImageEncoder("onnx", onnx_path=onnx_file, num_threads=2)


def test_onnx_threads_sleep_between_runs_unless_told_to_spin(onnx_file: Path) -> None:
    # Spinning intra-op threads cost ~4 ms CPU per image on shared cores (bench/README).
    def spinning(encoder: ImageEncoder) -> str:
        options = encoder._session.get_session_options()
        return str(options.get_session_config_entry("session.intra_op.allow_spinning"))

    assert spinning(ImageEncoder("onnx", onnx_path=onnx_file, num_threads=2)) == "0"
    assert spinning(ImageEncoder("onnx", onnx_path=onnx_file, spin_wait=True)) == "1"


def test_onnx_export_has_dynamic_batch(onnx_file: Path) -> None:
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    assert (
        max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 13
    )
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"


def test_onnx_matches_torch(torch_encoder: ImageEncoder, onnx_encoder: ImageEncoder) -> None:
    images = [*synthetic_images(8), b"definitely not an image"]
    reference, reference_ok = torch_encoder.encode_bytes(images)
    fast, fast_ok = onnx_encoder.encode_bytes(images)
    assert reference.shape == fast.shape == (9, EMBEDDING_DIM)
    assert reference.dtype == fast.dtype == np.float32
    assert reference_ok.tolist() == fast_ok.tolist() == [True] * 8 + [False]
    cosine = (reference[:8] * fast[:8]).sum(axis=1)
    assert cosine.min() > 1 - 1e-4
    np.testing.assert_allclose(np.linalg.norm(reference[:8], axis=1), 1.0, atol=1e-5)
    assert not reference[8].any()
    assert not fast[8].any()
    # Different pictures really give different embeddings.
    assert (reference[0] * reference[1]).sum() < 0.99


def test_batch_composition_does_not_change_embeddings(onnx_encoder: ImageEncoder) -> None:
    images = synthetic_images(5)
    together, _ = onnx_encoder.encode_bytes(images)
    alone, _ = onnx_encoder.encode_bytes(images[2:3])
    assert float((together[2] * alone[0]).sum()) > 1 - 1e-5


def test_bad_images_fail_alone_with_reasons() -> None:
    good = encode(Image.new("RGB", (40, 30), (10, 200, 10)), "PNG")
    truncated = encode(Image.new("RGB", (300, 300), (1, 2, 3)), "JPEG")[:200]
    bomb = encode(Image.new("1", (8000, 6000)), "PNG")  # 48 M pixels in a tiny file
    pixels, ok, reasons = preprocess([good, b"", b"<html>", truncated, bomb, good])
    assert ok.tolist() == [True, False, False, False, False, True]
    assert reasons == [None, "empty", "not_an_image", "corrupt_image", "too_many_pixels", None]
    assert pixels.shape == (2, 3, 224, 224)


def test_formats_transparency_and_first_gif_frame() -> None:
    red = Image.new("RGB", (64, 48), (255, 0, 0))
    blue = Image.new("RGB", (64, 48), (0, 0, 255))
    animated = io.BytesIO()
    red.save(animated, "GIF", save_all=True, append_images=[blue])
    reference = image_to_pixels(encode(red, "PNG"))
    np.testing.assert_allclose(image_to_pixels(animated.getvalue()), reference, atol=1e-6)
    np.testing.assert_allclose(image_to_pixels(encode(red, "WEBP", lossless=True)), reference)
    transparent = encode(Image.new("RGBA", (64, 48), (255, 0, 0, 0)), "PNG")
    white = image_to_pixels(encode(Image.new("RGB", (64, 48), "white"), "PNG"))
    np.testing.assert_allclose(image_to_pixels(transparent), white)
    for mode in ("L", "P", "CMYK", "LA"):
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        assert image_to_pixels(encode(red.convert(mode), fmt)).shape == (3, 224, 224)


def test_letterbox_keeps_the_whole_picture() -> None:
    wide = encode(Image.new("RGB", (400, 100), (0, 0, 0)), "PNG")
    pixels = image_to_pixels(wide)  # [3, 224, 224], black band between white pads
    white, black = (255 - 127) / 128, (0 - 127) / 128
    assert pixels[:, 0, :].min() == pytest.approx(white)
    assert pixels[:, 112, :].max() == pytest.approx(black)
    assert pixels.min() >= -1.0
    assert pixels.max() <= 1.0
