"""The worker's HTTP API (aiohttp): health, metrics, predictions, search, similar products.

Routes (all JSON except ``/metrics``):

* ``GET /health`` → 200 ``{"status": "ready"}`` only when Kafka, Triton, Milvus
  and Elasticsearch answer; otherwise 503 ``{"status": "degraded", "failed": [...]}``.
* ``GET /metrics`` → Prometheus text format of ``catstream.metrics.REGISTRY``.
* ``GET /products/{id}/prediction`` → the current prediction.
* ``GET /products/{id}/similar?k=100&level=2&by=text`` → nearest products (Milvus).
* ``GET /products/{id}/more-like-this?size=10&level=0`` → text-similar products (ES).
* ``GET /products/{id}/offers`` → other merchants' offers of the same product, cheapest first.
* ``GET /search?q=...&size=10&category=...`` → text search (ES).
* ``/review...`` → the labellers' web app (HTML; ``workers/review_app.py``).

Errors: 400 for a bad request, 404 for an unknown product, 503 while a service
is unreachable; the ``error`` text says what to do. Blocking clients run in
threads so one slow query never stalls the health check.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from catstream.errors import CatstreamError, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import REGISTRY
from catstream.redaction import redact, redact_value
from catstream.settings import Settings
from workers.health import HealthCheck, default_health_checks, run_checks
from workers.review_app import ImageSource, add_review_routes
from workers.search import ProductSearch

DEFAULTS = {"k": 100, "level": 2, "size": 10}
# A product id as one path segment, any characters (percent-encoded in the URL).
PRODUCT_ID = "{product_id:[^/]+}"
_log = get_logger(__name__)


class SimilarFinder(Protocol):
    def similar(self, product_id: str, k: int, level: int, by: Any) -> list[Any]: ...


SETTINGS = web.AppKey("settings", Settings)
CHECKS = web.AppKey("health_checks", dict)
SERVICES = web.AppKey("services", dict)


def build_api(
    settings: Settings,
    *,
    similar: object | None = None,
    health_checks: dict[str, Callable[[], Awaitable[bool]]] | None = None,
    images: ImageSource | None = None,
    review: bool = True,
) -> web.Application:
    """The API application; ``similar`` defaults to ``workers.similar.SimilarProducts``.

    ``review`` mounts the review web app; ``images`` is its image proxy's fetcher
    (``streams.images.ImageFetcher``, passed in by the worker and ``catstream review serve``).
    """
    app = web.Application(middlewares=[_errors_as_json])
    app[SETTINGS] = settings
    app[CHECKS] = health_checks if health_checks is not None else default_health_checks(settings)
    app[SERVICES] = {"similar": similar, "search": None}
    app.router.add_get("/", _index)
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/search", _search)
    # Any id, percent-encoded: aiohttp's default segment pattern refuses braces.
    app.router.add_get(f"/products/{PRODUCT_ID}/prediction", _prediction)
    app.router.add_get(f"/products/{PRODUCT_ID}/similar", _similar)
    app.router.add_get(f"/products/{PRODUCT_ID}/more-like-this", _more_like_this)
    app.router.add_get(f"/products/{PRODUCT_ID}/offers", _offers)  # issue 12
    app.on_cleanup.append(_close_clients)
    if review:
        add_review_routes(
            app,
            settings,
            images=images,
            similar=lambda: _similar_finder(app),
            documents=lambda: _search_client(app),
        )
    return app


async def run_api(
    settings: Settings,
    port: int | None = None,
    *,
    host: str | None = None,
    similar: object | None = None,
    health_checks: dict[str, HealthCheck] | None = None,
    images: ImageSource | None = None,
) -> None:
    """Serve the API on ``host:port`` until cancelled (defaults: ``settings.api_host``,
    ``settings.worker_web_port``)."""
    app = build_api(settings, similar=similar, health_checks=health_checks, images=images)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    chosen = settings.worker_web_port if port is None else port
    host = settings.api_host if host is None else host
    try:
        await web.TCPSite(runner, host, chosen).start()
        _log.info("api_listening", url=f"http://{host}:{chosen}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------- handlers


async def _index(request: web.Request) -> web.Response:
    routes = sorted({r.resource.canonical for r in request.app.router.routes() if r.resource})
    return web.json_response({"service": "catstream worker API", "routes": routes})


async def _health(request: web.Request) -> web.Response:
    checks = await run_checks(request.app[CHECKS])
    failed = [name for name, result in checks.items() if not result["ok"]]
    body: dict[str, Any] = {"status": "degraded" if failed else "ready", "checks": checks}
    if failed:
        body["failed"] = failed
        body["hint"] = (
            f"{', '.join(failed)} did not answer: check `catstream stack status` and the "
            "CATSTREAM_* URLs; the worker keeps retrying and nothing is committed past it"
        )
    # Check details quote service URLs and client errors: never their credentials.
    return web.json_response(redact_value(body), status=503 if failed else 200)


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(REGISTRY)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _search(request: web.Request) -> web.Response:
    text = request.query.get("q", "")
    size = _int_param(request, "size")
    category = request.query.get("category") or None
    search = _search_client(request.app)
    hits = await asyncio.to_thread(search.search, text, size=size, category=category)
    return web.json_response({"query": text, "count": len(hits), "products": hits})


async def _prediction(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    search = _search_client(request.app)
    return web.json_response(await asyncio.to_thread(search.prediction, product_id))


async def _more_like_this(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    size, level = _int_param(request, "size"), _int_param(request, "level", 0)
    search = _search_client(request.app)
    hits = await asyncio.to_thread(search.more_like_this, product_id, size=size, level=level)
    return web.json_response({"product_id": product_id, "count": len(hits), "products": hits})


async def _similar(request: web.Request) -> web.Response:
    product_id = request.match_info["product_id"]
    k, level = _int_param(request, "k"), _int_param(request, "level")
    by = request.query.get("by", "text")
    finder = _similar_finder(request.app)
    found = await asyncio.to_thread(finder.similar, product_id, k, level, by)
    products = [_as_json(item) for item in found]
    body = {"product_id": product_id, "k": k, "level": level, "by": by, "products": products}
    return web.json_response(body)


async def _offers(request: web.Request) -> web.Response:
    """Other merchants' offers of the same product (its offer group), cheapest first."""
    from workers.exchange_rates import ExchangeRatesError
    from workers.offers import ProductOffers

    product_id = request.match_info["product_id"]
    offers = ProductOffers(request.app[SETTINGS], _search_client(request.app).client)
    try:
        return web.json_response(await asyncio.to_thread(offers.offers, product_id))
    except ExchangeRatesError as exc:  # the operator's configuration, not the request
        return _error(500, _message(exc), request)


# ------------------------------------------------------------------- plumbing


@web.middleware
async def _errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return _error(exc.status, message or exc.reason, request)
    except RecoverableError as exc:
        return _error(503, f"{exc}", request, retry_after=True)
    except LookupError as exc:
        return _error(404, _message(exc), request)
    except (CatstreamError, ValueError) as exc:
        if type(exc).__name__ == "ProductNotIndexed":  # workers.similar: not yet in Milvus
            return _error(404, _message(exc), request)
        return _error(400, _message(exc), request)


def _error(
    status: int, message: str, request: web.Request, *, retry_after: bool = False
) -> web.Response:
    message = redact(message)  # a client error may quote a URL with its credentials
    if status >= 500:
        _log.warning("api_error", path=request.path, status=status, error=message)
    headers = {"Retry-After": "5"} if retry_after else None
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _int_param(request: web.Request, name: str, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return DEFAULTS[name] if default is None else default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f"{name}={raw!r} is not an integer: pass e.g. ?{name}={DEFAULTS.get(name, 1)}"
        ) from None


def _search_client(app: web.Application) -> ProductSearch:
    services = app[SERVICES]
    if services["search"] is None:
        services["search"] = ProductSearch(app[SETTINGS])
    search: ProductSearch = services["search"]
    return search


def _similar_finder(app: web.Application) -> SimilarFinder:
    services = app[SERVICES]
    if services["similar"] is None:
        from workers.similar import SimilarProducts  # pymilvus is slow to import

        services["similar"] = SimilarProducts(app[SETTINGS])
    finder: SimilarFinder = services["similar"]
    return finder


def _as_json(item: Any) -> Any:
    if hasattr(item, "to_dict"):
        return item.to_dict()
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return item


async def _close_clients(app: web.Application) -> None:
    search = app[SERVICES].get("search")
    if search is not None:
        await asyncio.to_thread(search.close)
