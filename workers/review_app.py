"""The review web app, served by the worker's API under ``/review`` (issue 11).

Plain server-rendered HTML (Jinja2, autoescaped) and a little vanilla JavaScript
(``workers/static/review.js``, no build step, nothing from a CDN):

* ``GET  /review`` — the labeller's next item (leased to them), the live queue;
* ``POST /review/name`` — who is labelling (a cookie, SameSite=Strict);
* ``GET  /review/queue`` — the queue panel (oldest first, depth, budget), polled;
* ``GET  /review/taxonomy?q=`` — categories matching any words of their path (JSON);
* ``POST /review/answer`` — a candidate (``choice`` 1-5), a searched ``category``, or
  a ``verdict`` (``not_a_product``, ``cant_tell``) → a ``Label`` on ``products.labels``;
* ``POST /review/skip`` — give the item back (hidden from this labeller for a lease);
* ``GET  /review/image?url=`` — product images through a size-bounded proxy with the
  image fetcher's SSRF rules, for URLs the app has shown only;
* ``GET  /review/products/{id}`` — prediction history, labels, similar products;
* ``GET  /review/dashboard`` — queue depth, labels per hour, served version, holdout
  accuracy per model version (inline SVG), retrain decisions.

Every input is validated; a bad one gets a 4xx page saying what to do, and an
unexpected error a 500 page without a trace (the log has it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from aiohttp import web
from confluent_kafka import Producer

from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy, UnknownCategoryError
from schemas.events import PRODUCT_ID_MAX, Label, ReviewItem, Verdict, now_ms
from workers.review_charts import accuracy_chart, labels_chart
from workers.review_feed import ReviewFeed
from workers.review_leases import Lease, LeaseStore
from workers.review_state import ReviewState
from workers.taxonomy_search import TaxonomySearch

log = get_logger(__name__)

HERE = Path(__file__).parent
COOKIE = "catstream_labeller"
LABELLER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
VERDICTS: dict[str, Verdict] = {"not_a_product": "not_a_product", "cant_tell": "cant_tell"}
QUEUE_SHOWN = 25
SHOWN_IMAGES_KEPT = 20_000
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ImageResult(Protocol):
    @property
    def ok(self) -> bool: ...


class ImageSource(Protocol):
    """What the proxy needs of ``streams.images.ImageFetcher`` (injected: workers sit below
    streams)."""

    async def fetch(self, url: str) -> Any: ...


class SimilarSource(Protocol):
    def similar(self, product_id: str, k: int, level: int, by: Any) -> list[Any]: ...


@dataclass
class ReviewApp:
    settings: Settings
    taxonomy: Taxonomy
    search: TaxonomySearch
    state: ReviewState
    feed: ReviewFeed
    leases: LeaseStore
    images: ImageSource | None
    templates: jinja2.Environment
    similar: Callable[[], SimilarSource] | None = None
    documents: Callable[[], Any] | None = None
    producer: Producer | None = None

    def __post_init__(self) -> None:
        self.shown_images: OrderedDict[str, None] = OrderedDict()

    def show_image(self, url: str) -> str:
        """The proxy URL of ``url``, which the proxy will now serve."""
        self.shown_images.pop(url, None)
        self.shown_images[url] = None
        while len(self.shown_images) > SHOWN_IMAGES_KEPT:
            self.shown_images.popitem(last=False)
        return f"/review/image?url={quote(url, safe='')}"


REVIEW = web.AppKey("review_app", ReviewApp)


def add_review_routes(
    app: web.Application,
    settings: Settings,
    *,
    images: ImageSource | None = None,
    similar: Callable[[], SimilarSource] | None = None,
    documents: Callable[[], Any] | None = None,
) -> None:
    """Mount ``/review`` on the API. ``images`` is the image fetcher the proxy uses."""
    taxonomy = Taxonomy.load(settings.taxonomy_path)
    state = ReviewState(
        taxonomy,
        order=settings.review_order,
        query_batch=settings.review_query_batch,
        min_holdout=settings.retrain_min_holdout,
    )
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters["when"] = _when
    lease_db = settings.review_lease_db or settings.home / "review-leases.sqlite"
    review = ReviewApp(
        settings=settings,
        taxonomy=taxonomy,
        search=TaxonomySearch(taxonomy),
        state=state,
        feed=ReviewFeed(settings, state),
        leases=LeaseStore(lease_db, settings.review_lease_minutes * 60.0),
        images=images,
        templates=templates,
        similar=similar,
        documents=documents,
    )
    app[REVIEW] = review
    app.middlewares.append(_review_errors)
    app.router.add_get("/review", _page)
    app.router.add_post("/review/name", _name)
    app.router.add_get("/review/queue", _queue)
    app.router.add_get("/review/taxonomy", _taxonomy)
    app.router.add_post("/review/answer", _answer)
    app.router.add_post("/review/skip", _skip)
    app.router.add_get("/review/image", _image)
    app.router.add_get("/review/products/{product_id:[^/]+}", _product)
    app.router.add_get("/review/dashboard", _dashboard)
    app.router.add_static("/review/static", HERE / "static", append_version=False)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)


async def _start(app: web.Application) -> None:
    app[REVIEW].feed.start()


async def _stop(app: web.Application) -> None:
    review = app[REVIEW]
    await asyncio.to_thread(review.feed.stop)
    review.leases.close()
    if review.images is not None and hasattr(review.images, "close"):
        await review.images.close()


# ------------------------------------------------------------------ pages


class PageError(Exception):
    """A request the app refuses, with the text shown to the labeller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status
        self.message = message


def _render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    review = request.app[REVIEW]
    html = review.templates.get_template(name).render(
        labeller=request.cookies.get(COOKIE) if _valid_name(request.cookies.get(COOKIE)) else None,
        **context,
    )
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def _valid_name(name: str | None) -> bool:
    return bool(name) and LABELLER.match(name or "") is not None


def _labeller(request: web.Request) -> str:
    name = request.cookies.get(COOKIE)
    if not _valid_name(name):
        raise PageError(
            400,
            "Tell the app who you are first: open /review and enter your name "
            "(letters, digits, spaces, . _ @ -; at most 64 characters).",
        )
    return str(name)


async def _page(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    name = request.cookies.get(COOKIE)
    if not _valid_name(name):
        return _render(request, "name.html", queue=_queue_context(review, None))
    labeller = str(name)
    now = time.time()
    with review.feed.lock:
        queue = review.state.serving_queue()  # the active-learning order, not the display's
    lease = await asyncio.to_thread(
        review.leases.take_first, labeller, [i.product_id for i in queue], now
    )
    item = None
    if lease is not None:
        with review.feed.lock:
            item = review.state.items.get(lease.product_id)
    context = _queue_context(review, labeller)
    if item is None or lease is None:
        return _render(request, "review.html", item=None, lease=None, queue=context)
    images = [review.show_image(u) for u in item.image_urls[:3]]
    return _render(
        request,
        "review.html",
        item=item,
        lease=lease,
        lease_left_s=max(int(lease.expires_at - now), 0),
        images=images,
        price=_price(item),
        queue=context,
    )


async def _name(request: web.Request) -> web.Response:
    form = await request.post()
    name = str(form.get("labeller", "")).strip()
    if not _valid_name(name):
        raise PageError(
            400,
            "That name cannot be used: letters, digits, spaces and . _ @ - only, starting "
            "with a letter or digit, at most 64 characters.",
        )
    response = web.HTTPSeeOther("/review")
    response.set_cookie(COOKIE, name, httponly=True, samesite="Strict", max_age=30 * 86400)
    raise response


def _queue_context(review: ReviewApp, labeller: str | None) -> dict[str, Any]:
    now = time.time()
    window_ms = int(review.settings.review_window_s * 1000)
    with review.feed.lock:
        queue = review.state.queue()
        sent = review.state.sent_since(now_ms() - window_ms)
    leases = review.leases.active(now)
    rows = [
        {
            "item": item,
            "age_s": max(int(now - item.created_at / 1000), 0),
            "leased_by": leases[item.product_id].labeller if item.product_id in leases else None,
        }
        for item in queue[:QUEUE_SHOWN]
    ]
    return {
        "depth": len(queue),
        "leased": sum(1 for i in queue if i.product_id in leases),
        "rows": rows,
        "budget": review.settings.review_budget_per_window,
        "window_s": review.settings.review_window_s,
        "sent_in_window": sent,
        "feed_alive": review.feed.alive,
        "records": review.feed.records,
        "me": labeller,
    }


async def _queue(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    name = request.cookies.get(COOKIE)
    return _render(
        request, "queue.html", queue=_queue_context(review, name if _valid_name(name) else None)
    )


async def _taxonomy(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    query = request.query.get("q", "")
    limit = _int(request.query.get("limit"), "limit", 20, 1, 100)
    started = time.perf_counter()
    try:
        hits = review.search.search(query, limit)
    except ValueError as exc:
        raise PageError(400, str(exc)) from None
    took_ms = (time.perf_counter() - started) * 1000
    return web.json_response(
        {"query": query, "took_ms": round(took_ms, 3), "categories": [h.to_dict() for h in hits]},
        headers=SECURITY_HEADERS,
    )


def _int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise PageError(400, f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


def _product_id(raw: object) -> str:
    text = str(raw or "")
    if not text.strip():
        raise PageError(400, "No product was given: answer from the review page.")
    if len(text) > PRODUCT_ID_MAX:
        raise PageError(400, f"A product id has at most {PRODUCT_ID_MAX} characters.")
    return text


def _held_item(review: ReviewApp, product_id: str, labeller: str) -> ReviewItem:
    with review.feed.lock:
        item = review.state.items.get(product_id)
        answered = item is not None and review.state.answered(item)
    if item is None:
        raise PageError(404, "This product is not in the review queue; go back to /review.")
    if answered:
        raise PageError(409, "This product was answered already; go back to /review.")
    holder = review.leases.holder(product_id, time.time())
    if holder is not None and holder != labeller:
        raise PageError(
            409,
            f"Your lease on this item ran out and {holder} is working on it now; "
            "go back to /review for your next item.",
        )
    return item


async def _answer(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    labeller = _labeller(request)
    form = await request.post()
    product_id = _product_id(form.get("product_id"))
    choice, category, verdict = (
        str(form.get(k, "")).strip() for k in ("choice", "category", "verdict")
    )
    given = [bool(choice), bool(category), bool(verdict)]
    if sum(given) != 1:
        raise PageError(
            400, "Give exactly one answer: a candidate (1-5), a category, or a verdict."
        )
    item = _held_item(review, product_id, labeller)
    path = ""
    chosen_verdict: Verdict = "category"
    if choice:
        if choice not in {"1", "2", "3", "4", "5"} or int(choice) > len(item.candidates):
            raise PageError(
                400, f"choice must be 1 to {len(item.candidates)} (a candidate on the card)."
            )
        path = _canonical(review.taxonomy, str(item.candidates[int(choice) - 1].id))
    elif category:
        if len(category) > 1000:
            raise PageError(400, "That category is too long; pick one from the search.")
        path = _canonical(review.taxonomy, category)
    else:
        if verdict not in VERDICTS:
            raise PageError(400, "verdict must be not_a_product or cant_tell.")
        chosen_verdict = VERDICTS[verdict]
    label = Label(
        product_id=item.product_id,
        category=path,
        labeller=labeller,
        title=item.title,
        description=item.description,
        brand=item.brand,
        raw_category=item.raw_category,
        image_urls=list(item.image_urls),
        verdict=chosen_verdict,
        random_sample=item.random_sample,
        model_version=item.model_version,
    )
    await asyncio.to_thread(_publish, review, label)
    review.feed.apply("labels", label)
    await asyncio.to_thread(review.leases.release, item.product_id, labeller)
    log.info(
        "review_answered", product_id=item.product_id, labeller=labeller, verdict=label.verdict
    )
    raise web.HTTPSeeOther("/review")


def _canonical(taxonomy: Taxonomy, category: str) -> str:
    try:
        return taxonomy.path_str(taxonomy.resolve(category))
    except UnknownCategoryError:
        raise PageError(
            400, "That category is not in the taxonomy; press / and pick one from the search."
        ) from None


def _publish(review: ReviewApp, label: Label) -> None:
    if review.producer is None:
        review.producer = Producer(
            librdkafka_config(review.settings, **{"enable.idempotence": True})
        )
    review.producer.produce(
        review.settings.topic("labels"),
        key=label.product_id.encode(),
        value=label.model_dump_json().encode(),
    )
    if review.producer.flush(15):
        raise PageError(
            503,
            "Kafka did not confirm your answer, so it was not saved. Try again in a moment; "
            "if it keeps failing, tell whoever runs catstream (catstream stack status).",
        )


async def _skip(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    labeller = _labeller(request)
    form = await request.post()
    product_id = _product_id(form.get("product_id"))
    with review.feed.lock:
        known = product_id in review.state.items
    if not known:
        raise PageError(404, "This product is not in the review queue; go back to /review.")
    await asyncio.to_thread(review.leases.skip, product_id, labeller, time.time())
    raise web.HTTPSeeOther("/review")


async def _image(request: web.Request) -> web.StreamResponse:
    review = request.app[REVIEW]
    url = request.query.get("url", "")
    if not url or len(url) > 4096:
        raise PageError(400, "Pass url=<an image URL shown on a review page>.")
    if url not in review.shown_images:
        raise PageError(404, "Only images of products shown on the review pages are served.")
    if review.images is None:
        raise PageError(503, "The image proxy is not running in this process.")
    result = await review.images.fetch(url)
    if not getattr(result, "ok", False):
        reason = getattr(result, "reason", "unavailable")
        raise PageError(502, f"The image could not be fetched ({reason}).")
    content_type = str(result.content_type)
    if content_type == "image/svg+xml":  # scripts inside SVG: never served from our origin
        raise PageError(415, "SVG images are not shown.")
    data: bytes = result.data
    if len(data) > review.settings.review_image_max_bytes:
        raise PageError(413, "The image is too large to show.")
    return web.Response(
        body=data,
        content_type=content_type,
        headers={**SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"},
    )


async def _product(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    product_id = _product_id(request.match_info["product_id"])
    with review.feed.lock:
        item = review.state.items.get(product_id)
        label = review.state.labels.get(product_id)
        history = list(review.state.history.get(product_id, ()))
    if item is None and label is None and not history:
        raise PageError(404, "catstream has no review item, label or prediction of this product.")
    similar, similar_error = await _similar(review, product_id)
    images = [review.show_image(u) for u in (item.image_urls[:3] if item else [])]
    return _render(
        request,
        "product.html",
        product_id=product_id,
        item=item,
        label=label,
        history=list(reversed(history)),
        similar=similar,
        similar_error=similar_error,
        images=images,
        price=_price(item) if item else None,
    )


async def _similar(review: ReviewApp, product_id: str) -> tuple[list[dict[str, Any]], str | None]:
    if review.similar is None:
        return [], "similar products are not available in this process"
    try:
        found = await asyncio.to_thread(review.similar().similar, product_id, 10, 0, "text")
    except Exception as exc:  # shown as a line on the page; the product page still works
        return [], _short(exc)
    rows: list[dict[str, Any]] = []
    for hit in found:
        row: dict[str, Any] = {
            "product_id": hit.product_id,
            "score": hit.score,
            "category": hit.category_path,
            "title": None,
            "image": None,
        }
        if review.documents is not None:
            try:
                document = await asyncio.to_thread(review.documents().document, hit.product_id)
                row["title"] = document.get("title")
                urls = document.get("image_urls") or []
                row["image"] = review.show_image(urls[0]) if urls else None
            except Exception:  # a missing document only costs the title and the image
                pass
        rows.append(row)
    return rows, None


def _short(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text.splitlines()[0][:300] if text else type(exc).__name__


async def _dashboard(request: web.Request) -> web.Response:
    review = request.app[REVIEW]
    now = now_ms()
    with review.feed.lock:
        depth = len(review.state.queue())
        per_hour = review.state.labels_per_hour(now)
        served = review.state.served_version
        scores = review.state.version_scores()
        decisions = list(review.state.decisions)
        labels_total = len(review.state.labels)
    return _render(
        request,
        "dashboard.html",
        depth=depth,
        per_hour=per_hour,
        last_hour=per_hour[-1],
        labels_total=labels_total,
        served=served,
        scores=scores,
        decisions=list(reversed(decisions)),
        labels_svg=labels_chart(per_hour),
        accuracy_svg=accuracy_chart(scores, decisions),
    )


def _price(item: ReviewItem | None) -> str | None:
    if item is None or not item.price:
        return None
    return f"{item.price} {item.currency or ''}".strip()


def _when(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_ms / 1000)) + "Z"


# ------------------------------------------------------------------ errors


@web.middleware
async def _review_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/review"):
        return await handler(request)
    try:
        return await handler(request)
    except PageError as exc:
        return _error_page(request, exc.status_code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc.status, _http_message(exc))
    except Exception as exc:
        log.error("review_page_failed", path=request.path, exc_info=exc)
        return _error_page(
            request,
            500,
            "Something went wrong on our side; your last answer may not have been saved. "
            "Reload the page; if it keeps happening, tell whoever runs catstream.",
        )


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "There is no such page; go back to /review."
    if exc.status == 405:
        return "That page does not take this kind of request; go back to /review."
    if exc.status == 413:
        return "That request is too large."
    return exc.reason or "The request was refused."


def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/review/taxonomy"):
        return web.json_response({"error": message, "status": status}, status=status)
    return _render(request, "error.html", status=status, code=status, message=message)


__all__ = ["REVIEW", "ImageSource", "Lease", "ReviewApp", "add_review_routes"]
