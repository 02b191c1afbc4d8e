"""Reading the product index: text search, more-like-this, and prediction lookup.

All three read the documents the Elasticsearch sink writes (one per product,
``_id`` = product id). Errors say what to do: a product that is not in the index
raises ``ProductNotFound``; Elasticsearch being unreachable raises
``RecoverableError`` (the API answers 503 and the caller retries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, NotFoundError

from catstream.errors import CatstreamError, RecoverableError
from catstream.settings import Settings
from workers.elasticsearch_index import CATEGORY_LEVELS, elasticsearch_client

T = TypeVar("T")
MAX_RESULTS = 100
TEXT_FIELDS = ["title^3", "brand^2", "raw_category", "description"]
SUMMARY_FIELDS = [
    "product_id",
    "title",
    "brand",
    "price",
    "currency",
    "url",
    "category",
    "prediction",
]


class SearchError(CatstreamError):
    """A search request that cannot be answered as asked (the caller's fault)."""


class ProductNotFound(SearchError, LookupError):
    """The product has no document in the index."""


class ProductSearch:
    """Queries against ``settings.elasticsearch_index``."""

    def __init__(self, settings: Settings, client: Elasticsearch | None = None) -> None:
        self.settings = settings
        self.index = settings.elasticsearch_index
        self.client = client or elasticsearch_client(settings)

    def search(
        self, text: str, *, size: int = 10, category: str | None = None
    ) -> list[dict[str, Any]]:
        """Products matching ``text`` in title, brand, feed category and description.

        ``category`` restricts to a predicted category path or any ancestor of it
        (e.g. ``"Apparel & Accessories"`` matches ``"Apparel & Accessories > Shoes"``).
        """
        if not text.strip():
            raise SearchError("the search text is empty: pass q=<words to look for>")
        query: dict[str, Any] = {
            "bool": {
                "must": {"multi_match": {"query": text, "fields": TEXT_FIELDS}},
                "filter": _category_filter(category),
            }
        }
        return self._hits(query, _checked_size(size))

    def more_like_this(
        self, product_id: str, *, size: int = 10, level: int = 0
    ) -> list[dict[str, Any]]:
        """Products whose text resembles ``product_id``'s, in its category at ``level`` (0: any)."""
        if not 0 <= level <= CATEGORY_LEVELS:
            raise SearchError(
                f"level={level} is out of range: use 0 (any category) to {CATEGORY_LEVELS}"
            )
        source = self.document(product_id)
        filters: list[dict[str, Any]] = []
        if level:
            path = (source.get("category") or {}).get(f"l{level}")
            if path is None:
                raise SearchError(
                    f"product {product_id!r} has no predicted category at level {level}: "
                    "use a lower level, or level=0 for any category"
                )
            filters.append({"term": {f"category.l{level}": path}})
        query: dict[str, Any] = {
            "bool": {
                "must": {
                    "more_like_this": {
                        "fields": ["title", "brand", "description"],
                        "like": [{"_index": self.index, "_id": product_id}],
                        "min_term_freq": 1,
                        "min_doc_freq": 1,
                        "max_query_terms": 25,
                    }
                },
                "filter": filters,
            }
        }
        return self._hits(query, _checked_size(size))

    def prediction(self, product_id: str) -> dict[str, Any]:
        """The current prediction stored for ``product_id``."""
        source = self.document(product_id)
        prediction = source.get("prediction")
        if not prediction:
            raise ProductNotFound(
                f"product {product_id!r} has no prediction yet: check that it reached "
                f"{self.settings.topic('predictions')} and the lag of consumer group "
                f"{self.settings.app_id}-elasticsearch-sink"
            )
        category = source.get("category") or {}
        return {
            "product_id": product_id,
            "category": category.get("path"),
            "category_id": category.get("id"),
            "category_ids": category.get("ids", []),
            "score": prediction.get("score"),
            "confidence": prediction.get("confidence"),
            "uncertainty": prediction.get("uncertainty"),
            "needs_review": prediction.get("needs_review"),
            "model_name": prediction.get("model_name"),
            "model_version": prediction.get("model_version"),
            "categories": prediction.get("categories", []),
            "product_updated_at": prediction.get("updated_at"),
            "predicted_at": prediction.get("predicted_at"),
            "image_failed": prediction.get("image_failed"),
        }

    def document(self, product_id: str) -> dict[str, Any]:
        """The stored document of ``product_id``."""
        try:
            response = self._call(lambda: self.client.get(index=self.index, id=product_id))
        except NotFoundError:
            raise ProductNotFound(self._not_indexed(product_id)) from None
        source: dict[str, Any] = response["_source"]
        return source

    def close(self) -> None:
        self.client.close()

    def _hits(self, query: dict[str, Any], size: int) -> list[dict[str, Any]]:
        response = self._call(
            lambda: self.client.search(
                index=self.index, query=query, size=size, source_includes=SUMMARY_FIELDS
            )
        )
        return [_summary(hit) for hit in response["hits"]["hits"]]

    def _not_indexed(self, product_id: str) -> str:
        return (
            f"product {product_id!r} is not in index {self.index!r}: check that it was "
            f"published to {self.settings.topic('normalised')} and the lag of consumer group "
            f"{self.settings.app_id}-elasticsearch-sink"
        )

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except NotFoundError as exc:
            if exc.error == "index_not_found_exception":
                raise ProductNotFound(
                    f"index {self.index!r} does not exist yet: start the Elasticsearch sink "
                    "(catstream worker) so it creates it"
                ) from exc
            raise
        except ApiError as exc:
            if exc.meta.status == 400:
                raise SearchError(f"Elasticsearch refused the query: {exc.message}") from exc
            raise RecoverableError(
                "elasticsearch", f"{exc.meta.status} {exc.message}; retry shortly"
            ) from exc
        except TransportError as exc:
            raise RecoverableError(
                "elasticsearch",
                f"cannot reach {self.settings.elasticsearch_url} ({type(exc).__name__}); "
                "check that Elasticsearch is up (catstream stack status)",
            ) from exc


def _category_filter(category: str | None) -> list[dict[str, Any]]:
    return [{"term": {"category.path": category}}] if category else []


def _checked_size(size: int) -> int:
    if not 1 <= size <= MAX_RESULTS:
        raise SearchError(f"size={size} is out of range: ask for 1 to {MAX_RESULTS} products")
    return size


def _summary(hit: dict[str, Any]) -> dict[str, Any]:
    source = hit.get("_source") or {}
    category = source.get("category") or {}
    prediction = source.get("prediction") or {}
    return {
        "product_id": hit["_id"],
        "score": hit.get("_score"),
        "title": source.get("title"),
        "brand": source.get("brand"),
        "price": source.get("price"),
        "currency": source.get("currency"),
        "url": source.get("url"),
        "category": category.get("path"),
        "model_version": prediction.get("model_version"),
    }
