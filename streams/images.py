"""Fetch product images over http(s), safely and cached, for the stream and training.

``ImageFetcher(settings).fetch(url)`` returns a :class:`FetchedImage` or an
:class:`ImageFailure` with a short ``reason``; it never raises for a bad URL or
server, because a product whose image fails is still categorised from its text.

Safety, since feed URLs are attacker-controlled (server-side request forgery):

* http and https only; at most ``max_redirects`` redirects, each re-checked;
* every address a host resolves to must be public, unless
  ``settings.image_allow_private``. The check runs *inside* the connection's
  resolver, so the address that is checked is the address that is connected to
  (a DNS answer that changes between check and connect, "DNS rebinding", cannot
  slip through); IP literals are checked before the request;
* ``settings.image_fetch_timeout_s`` for the whole fetch, redirects included;
* ``settings.image_max_bytes``: a bigger ``Content-Length`` is refused and a
  streaming read is aborted as soon as it passes the limit;
* the response must say ``Content-Type: image/*``.

Caching: an in-memory LRU of recent results (failures expire after a short
while: ``negative_ttl_s``, shorter still for transient ones), and a disk cache of
image bytes under ``settings.home / "image-cache"`` named by the SHA-256 of the
URL, bounded by ``disk_max_bytes`` (oldest files are evicted first).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from catstream.logs import get_logger
from catstream.metrics import IMAGE_FETCH_BYTES, IMAGE_FETCH_SECONDS, IMAGE_FETCHES
from catstream.settings import Settings

log = get_logger(__name__)

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Failures that may well succeed on the next try get a shorter negative cache.
TRANSIENT_REASONS = frozenset({"timeout", "connection_error", "dns_error", "http_429"})
CHUNK_BYTES = 64 * 1024
USER_AGENT = "catstream-image-fetcher/0.1 (+product categorisation)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 prefixes that embed an IPv4 address, which is what is really reached.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchedImage:
    """An image's bytes as served, with where they came from."""

    url: str
    data: bytes
    content_type: str
    source: str = "network"  # network | memory | disk

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class ImageFailure:
    """Why an image could not be fetched: ``reason`` is a short stable code."""

    url: str
    reason: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return False

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS or self.reason.startswith("http_5")


FetchResult = FetchedImage | ImageFailure


class _Refused(Exception):
    """A fetch stops here with ``reason``; turned into an :class:`ImageFailure`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BlockedAddress(OSError):
    """A host resolved to an address the fetcher must not connect to."""


def url_key(url: str) -> str:
    """Cache key of a URL: hex SHA-256 of its text."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def is_blocked_address(address: str | IPAddress) -> bool:
    """True for loopback, private, link-local, multicast, reserved and other non-public IPs.

    IPv6 forms that carry an IPv4 address (``::ffff:a.b.c.d``, 6to4, NAT64) are
    judged by the embedded address.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return True  # not an address at all: refuse rather than guess
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_blocked_address(embedded)
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise :class:`_Refused` for a URL the fetcher must not request.

    Host names are resolved later, by :class:`GuardedResolver`; literal IPs are
    checked here because the connector never resolves them.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Refused("bad_url", f"cannot parse {url!r}: {exc}") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise _Refused("unsupported_scheme", f"{parts.scheme or 'no'} scheme; use http(s) URLs")
    host = parts.hostname
    if not host:
        raise _Refused("bad_url", f"no host in {url!r}")
    if parts.username is not None or parts.password is not None:
        raise _Refused("bad_url", "credentials in image URLs are not supported; remove user:pass@")
    if port == 0:
        raise _Refused("bad_url", "port 0 is not a valid port")
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    if is_blocked_address(literal):
        raise _Refused("blocked_private_address", f"{host} is not a public address")


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing hosts with any non-public address.

    Every resolved address is checked, not just the first: a host answering
    both a public and a private address could otherwise be steered to either.
    """

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        blocked = [entry["host"] for entry in results if is_blocked_address(entry["host"])]
        if blocked:
            raise BlockedAddress(f"{host} resolves to non-public address {blocked[0]}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class DiskImageCache:
    """Image bytes by URL hash under ``root``, bounded by ``max_bytes``.

    Each file holds the content type, a newline, then the bytes; it is written to
    a temporary name and renamed, so a reader never sees half a file. When the
    total passes ``max_bytes`` the least recently written files are removed until
    it is under 90% of it.
    """

    def __init__(self, root: Path, max_bytes: int, ttl_s: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._total: int | None = None  # computed on first write

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, url: str) -> FetchedImage | None:
        path = self._path(url_key(url))
        try:
            if time.time() - path.stat().st_mtime > self.ttl_s:
                return None
            raw = path.read_bytes()
        except OSError:
            return None
        content_type, sep, data = raw.partition(b"\n")
        if not sep:
            return None
        return FetchedImage(url, data, content_type.decode("ascii", "replace"), "disk")

    def put(self, image: FetchedImage) -> None:
        path = self._path(url_key(image.url))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        payload = image.content_type.encode("ascii", "replace") + b"\n" + image.data
        tmp.write_bytes(payload)
        os.replace(tmp, path)
        if self._total is None:
            self._total = sum(size for _, size, _ in self._entries())
        else:
            self._total += len(payload)
        if self._total > self.max_bytes:
            self._evict()

    def _entries(self) -> Iterable[tuple[Path, int, float]]:
        for path in self.root.glob("??/*"):
            try:
                stat = path.stat()
            except OSError:
                continue  # removed by a concurrent eviction
            yield path, stat.st_size, stat.st_mtime

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda entry: entry[2])
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * 0.9)
        for path, size, _ in entries:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._total = total


class _MemoryCache:
    """LRU of recent results, bounded by entry count and by image bytes held."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[FetchResult, float]] = OrderedDict()
        self._bytes = 0

    def get(self, url: str) -> FetchResult | None:
        entry = self._entries.get(url)
        if entry is None:
            return None
        result, expires_at = entry
        if time.monotonic() >= expires_at:
            self._remove(url)
            return None
        self._entries.move_to_end(url)
        return result

    def put(self, result: FetchResult, ttl_s: float) -> None:
        self._remove(result.url)
        self._entries[result.url] = (result, time.monotonic() + ttl_s)
        self._bytes += _size(result)
        while self._entries and (
            len(self._entries) > self.max_items or self._bytes > self.max_bytes
        ):
            self._remove(next(iter(self._entries)))

    def _remove(self, url: str) -> None:
        entry = self._entries.pop(url, None)
        if entry is not None:
            self._bytes -= _size(entry[0])


def _size(result: FetchResult) -> int:
    return len(result.data) if isinstance(result, FetchedImage) else 0


class ImageFetcher:
    """Async, cached, SSRF-safe image downloads (see the module docstring).

    Use as ``async with ImageFetcher(settings) as fetcher: await fetcher.fetch(url)``
    or call :meth:`close` when done. Concurrent fetches of one URL share a download.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_redirects: int = 3,
        max_concurrency: int = 16,
        negative_ttl_s: float = 300.0,
        transient_ttl_s: float = 30.0,
        memory_items: int = 1024,
        memory_max_bytes: int = 64_000_000,
        disk_max_bytes: int = 1_000_000_000,
        disk_ttl_s: float = 7 * 24 * 3600.0,
    ) -> None:
        self.timeout_s = settings.image_fetch_timeout_s
        self.max_bytes = settings.image_max_bytes
        self.allow_private = settings.image_allow_private
        self.max_redirects = max_redirects
        self.negative_ttl_s = negative_ttl_s
        self.transient_ttl_s = transient_ttl_s
        self.disk = DiskImageCache(settings.home / "image-cache", disk_max_bytes, disk_ttl_s)
        self._memory = _MemoryCache(memory_items, memory_max_bytes)
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._in_flight: dict[str, asyncio.Task[FetchResult]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ImageFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = None if self.allow_private else GuardedResolver()
            connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=60, resolver=resolver)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
                trust_env=False,  # an environment proxy would bypass the address checks
            )
        return self._session

    async def fetch_many(self, urls: Iterable[str]) -> list[FetchResult]:
        """Results for ``urls`` in order, fetched concurrently (bounded)."""
        return list(await asyncio.gather(*(self.fetch(url) for url in urls)))

    async def fetch(self, url: str) -> FetchResult:
        """The image at ``url`` from memory, disk or the network, or why not."""
        cached = self._memory.get(url)
        if cached is not None:
            IMAGE_FETCHES.labels(_outcome(cached), "memory").inc()
            return _from_memory(cached)
        task = self._in_flight.get(url)
        if task is None:
            # A task of its own: one caller being cancelled must not cancel the
            # download the other callers of the same URL are waiting for.
            task = asyncio.create_task(self._fetch_uncached(url), name=f"fetch-image {url}")
            self._in_flight[url] = task
            task.add_done_callback(lambda _: self._in_flight.pop(url, None))
        return await asyncio.shield(task)

    async def _fetch_uncached(self, url: str) -> FetchResult:
        disk_hit = await asyncio.to_thread(self.disk.get, url)
        if disk_hit is not None:
            self._memory.put(disk_hit, ttl_s=self.disk.ttl_s)
            IMAGE_FETCHES.labels("ok", "disk").inc()
            return disk_hit
        async with self._semaphore:
            started = time.perf_counter()
            result = await self._download(url)
            IMAGE_FETCH_SECONDS.observe(time.perf_counter() - started)
        IMAGE_FETCHES.labels(_outcome(result), "network").inc()
        if isinstance(result, FetchedImage):
            IMAGE_FETCH_BYTES.observe(len(result.data))
            self._memory.put(result, ttl_s=self.disk.ttl_s)
            try:
                await asyncio.to_thread(self.disk.put, result)
            except OSError as exc:  # a full or read-only disk only costs a refetch later
                log.warning("image_cache_write_failed", url=url, error=str(exc))
        else:
            ttl = self.transient_ttl_s if result.transient else self.negative_ttl_s
            self._memory.put(result, ttl_s=ttl)
            log.info("image_fetch_failed", url=url, reason=result.reason, detail=result.detail)
        return result

    async def _download(self, url: str) -> FetchResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url)
        except _Refused as refused:
            return ImageFailure(url, refused.reason, refused.detail)
        except TimeoutError:
            return ImageFailure(url, "timeout", f"no complete image within {self.timeout_s} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                return ImageFailure(url, "blocked_private_address", str(exc.os_error))
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                return ImageFailure(url, "dns_error", str(exc))
            return ImageFailure(url, "connection_error", str(exc))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return ImageFailure(url, "connection_error", f"{type(exc).__name__}: {exc}")

    async def _follow(self, url: str) -> FetchedImage:
        """Request ``url``, following redirects by hand so each hop is re-checked."""
        current = url
        for _ in range(self.max_redirects + 1):
            check_url(current, allow_private=self.allow_private)
            async with self._client().get(current, allow_redirects=False) as response:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise _Refused("bad_redirect", f"HTTP {response.status} without Location")
                    current = urljoin(current, location)
                    continue
                return await self._read_image(url, response)
        raise _Refused("too_many_redirects", f"more than {self.max_redirects} redirects")

    async def _read_image(self, url: str, response: aiohttp.ClientResponse) -> FetchedImage:
        if response.status != 200:
            raise _Refused(f"http_{response.status}", response.reason or "")
        content_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if not content_type.startswith("image/"):
            raise _Refused("not_an_image", f"Content-Type {content_type or 'missing'}")
        if response.content_length is not None and response.content_length > self.max_bytes:
            raise _Refused(
                "too_large", f"Content-Length {response.content_length} > {self.max_bytes}"
            )
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            received += len(chunk)
            if received > self.max_bytes:  # a missing or lying Content-Length
                raise _Refused("too_large", f"more than {self.max_bytes} bytes")
            chunks.append(chunk)
        if received == 0:
            raise _Refused("empty", "the server sent no bytes")
        return FetchedImage(url, b"".join(chunks), content_type, "network")


def _outcome(result: FetchResult) -> str:
    return "ok" if isinstance(result, FetchedImage) else result.reason


def _from_memory(result: FetchResult) -> FetchResult:
    if isinstance(result, FetchedImage) and result.source != "memory":
        return FetchedImage(result.url, result.data, result.content_type, "memory")
    return result


def fetch_images(settings: Settings, urls: Iterable[str]) -> list[FetchResult]:
    """Blocking :meth:`ImageFetcher.fetch_many` for scripts and training (not inside a loop)."""

    async def run() -> list[FetchResult]:
        async with ImageFetcher(settings) as fetcher:
            return await fetcher.fetch_many(urls)

    return asyncio.run(run())
