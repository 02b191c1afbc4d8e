"""Similar products by vector: the k nearest products by cosine in the same category.

``SimilarProducts(settings).similar(product_id, k, level, by)`` reads the
product's row from Milvus, then searches its vectors restricted to products
whose category at ``level`` is the same as its own (``cat_l{level} ==``; no
restriction at level 0), excluding the product itself.

``by``:
* ``text``: text embedding cosine.
* ``image``: image embedding cosine, among products that have an image.
* ``both``: the mean of text and image cosine, where both products have an
  image (text alone otherwise, also when the queried product has none).
  Candidates come from a text search and an image search; the score a
  candidate lacks from one search is computed from its stored vector, so every
  returned score is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pymilvus import MilvusClient

from catstream.errors import CatstreamError, RecoverableError
from catstream.settings import Settings
from workers.milvus_collection import (
    INDEX_SEARCH_PARAMS,
    LEVEL_FIELDS,
    MAX_LEVELS,
    CollectionSpec,
    connect,
)
from workers.milvus_filters import Filter, binds_templates
from workers.milvus_sink import MILVUS_ERRORS

SimilarBy = Literal["text", "image", "both"]
SIMILAR_BY: tuple[SimilarBy, ...] = ("text", "image", "both")
MAX_K = 16384  # Milvus' top-k limit per search
# milvus-lite searches its unsealed memtable row by row in Python: seconds for a few
# thousand rows on a busy laptop. Production Milvus answers in milliseconds.
QUERY_TIMEOUT_S = 30.0
RESULT_FIELDS = ["has_image", *LEVEL_FIELDS, "category_path"]


class SimilarError(CatstreamError):
    """A similar-products query that cannot be answered as asked."""


class ProductNotIndexed(SimilarError):
    """The product has no row in Milvus (yet)."""


@dataclass(frozen=True)
class SimilarProduct:
    product_id: str
    score: float
    category_ids: list[int]
    category_path: str
    text_score: float | None = None
    image_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Query:
    """The product a search starts from, as stored in Milvus."""

    product_id: str
    text_vector: list[float]
    image_vector: list[float] | None
    category_ids: list[int] = field(default_factory=list)


def check_request(k: int, level: int, by: str) -> None:
    """Reject parameters no search can satisfy, saying which values work."""
    if not 1 <= k <= MAX_K:
        raise SimilarError(f"k={k} is out of range: ask for 1 to {MAX_K} products")
    if not 0 <= level <= MAX_LEVELS:
        raise SimilarError(f"level={level} is out of range: use 0 (all categories) to {MAX_LEVELS}")
    if by not in SIMILAR_BY:
        raise SimilarError(f"by={by!r} is not supported: use one of {', '.join(SIMILAR_BY)}")


def category_filter(query: Query, level: int) -> Filter:
    """The Milvus filter: same category at ``level`` (and level 1, the partition
    key, so Milvus scans one partition), never the product itself."""
    clauses = ["product_id != {product_id}"]
    params: dict[str, Any] = {"product_id": query.product_id}
    if level > 0:
        if len(query.category_ids) < level:
            raise SimilarError(
                f"product {query.product_id!r} is categorised only to level "
                f"{len(query.category_ids)}: use --level {len(query.category_ids)} or lower"
            )
        clauses.append("cat_l1 == {cat_l1}")
        params["cat_l1"] = query.category_ids[0]
        if level > 1:
            # The field name comes from LEVEL_FIELDS (check_request bounds level), not input.
            clauses.append(f"{LEVEL_FIELDS[level - 1]} == {{cat_level}}")
            params["cat_level"] = query.category_ids[level - 1]
    return Filter(" and ".join(clauses), params)


def cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb / norm) if norm else 0.0


def combined_score(text: float, image: float | None) -> float:
    """``both``: mean of text and image cosine; text alone where an image is missing."""
    return text if image is None else (text + image) / 2


def category_ids_of(entity: dict[str, Any]) -> list[int]:
    ids = [int(entity.get(name, 0)) for name in LEVEL_FIELDS]
    return ids[: ids.index(0)] if 0 in ids else ids


class SimilarProducts:
    """Vector similar-products queries against the Milvus collection."""

    def __init__(self, settings: Settings, client: MilvusClient | None = None) -> None:
        self.spec = CollectionSpec.from_settings(settings)
        self.settings = settings
        self._client = client
        self._server_binds: bool | None = None  # asked once per connection
        self.search_params: dict[str, Any] = {
            "metric_type": "COSINE",
            "params": INDEX_SEARCH_PARAMS[self.spec.index_type],
        }

    @property
    def client(self) -> MilvusClient:
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    def similar(
        self, product_id: str, k: int = 100, level: int = 2, by: SimilarBy = "text"
    ) -> list[SimilarProduct]:
        check_request(k, level, by)
        try:
            query = self._lookup(product_id)
            if by == "image" and query.image_vector is None:
                raise SimilarError(
                    f"product {product_id!r} has no image embedding: use --by text "
                    "(or republish it with an image URL that can be fetched)"
                )
            expr = category_filter(query, level)
            if by == "text":
                return self._single(query.text_vector, "text_vector", expr, k, "text")
            if by == "image":
                assert query.image_vector is not None
                return self._single(
                    query.image_vector, "image_vector", expr.also("has_image == true"), k, "image"
                )
            return self._both(query, expr, k)
        except MILVUS_ERRORS as exc:
            self._client = None  # reconnect next time: the server may have restarted
            self._server_binds = None
            raise RecoverableError(
                "milvus", f"similar products of {product_id!r}: {exc}; retry when Milvus answers"
            ) from exc

    def _lookup(self, product_id: str) -> Query:
        if not self.client.has_collection(self.spec.name, timeout=QUERY_TIMEOUT_S):
            raise ProductNotIndexed(
                f"Milvus collection {self.spec.name!r} does not exist yet: run the Milvus sink "
                "(`catstream worker`) or check CATSTREAM_MILVUS_COLLECTION"
            )
        if self._server_binds is None:
            self._server_binds = binds_templates(self.client, self.spec.name)
        by_id = Filter("product_id == {product_id}", {"product_id": product_id})
        rows = self.client.query(
            self.spec.name,
            **by_id.kwargs(self._server_binds),
            output_fields=["text_vector", "image_vector", "has_image", *LEVEL_FIELDS],
            timeout=QUERY_TIMEOUT_S,
        )
        if not rows:
            raise ProductNotIndexed(
                f"product {product_id!r} is not indexed yet: check that it is on the "
                f"{self.settings.topic('embeddings')} topic and the Milvus sink lag "
                f"(consumer group {self.settings.app_id}-milvus-sink)"
            )
        row = rows[0]
        return Query(
            product_id=product_id,
            text_vector=[float(x) for x in row["text_vector"]],
            image_vector=[float(x) for x in row["image_vector"]] if row["has_image"] else None,
            category_ids=category_ids_of(row),
        )

    def _search(
        self, vector: list[float], field_name: str, expr: Filter, k: int, output: list[str]
    ) -> list[dict[str, Any]]:
        hits = self.client.search(
            self.spec.name,
            data=[vector],
            anns_field=field_name,
            **expr.kwargs(self._server_binds is not False),
            limit=k,
            output_fields=output,
            search_params=self.search_params,
            timeout=QUERY_TIMEOUT_S,
        )
        return list(hits[0])

    def _single(
        self, vector: list[float], field_name: str, expr: Filter, k: int, by: str
    ) -> list[SimilarProduct]:
        return [
            SimilarProduct(
                product_id=str(hit["product_id"]),
                score=float(hit["distance"]),
                category_ids=category_ids_of(hit["entity"]),
                category_path=str(hit["entity"].get("category_path", "")),
                text_score=float(hit["distance"]) if by == "text" else None,
                image_score=float(hit["distance"]) if by == "image" else None,
            )
            for hit in self._search(vector, field_name, expr, k, RESULT_FIELDS)
        ]

    def _both(self, query: Query, expr: Filter, k: int) -> list[SimilarProduct]:
        output = [*RESULT_FIELDS, "text_vector", "image_vector"]
        candidates: dict[str, dict[str, Any]] = {}
        for hit in self._search(query.text_vector, "text_vector", expr, k, output):
            candidates[str(hit["product_id"])] = hit["entity"]
        if query.image_vector is not None:
            image_expr = expr.also("has_image == true")
            for hit in self._search(query.image_vector, "image_vector", image_expr, k, output):
                candidates.setdefault(str(hit["product_id"]), hit["entity"])
        results = [self._scored(pid, entity, query) for pid, entity in candidates.items()]
        results.sort(key=lambda r: r.score, reverse=True)
        return results[:k]

    def _scored(self, product_id: str, entity: dict[str, Any], query: Query) -> SimilarProduct:
        text = cosine(query.text_vector, entity["text_vector"])
        image = None
        if entity["has_image"] and query.image_vector is not None:
            image = cosine(query.image_vector, entity["image_vector"])
        return SimilarProduct(
            product_id=product_id,
            score=combined_score(text, image),
            category_ids=category_ids_of(entity),
            category_path=str(entity.get("category_path", "")),
            text_score=text,
            image_score=image,
        )
