"""Where the matching agent's candidates come from, and the state it reads and writes.

Candidates for a product (blocking):

- Milvus: the ``match_candidates_k`` nearest text vectors, and as many nearest
  image vectors (when the product has an image), within its level-1 category
  (``cat_l1``, the collection's partition key); never the product itself;
- Elasticsearch (the offer index): same brand and model number, a shared
  GTIN/EAN/UPC/MPN, and a title ``more_like_this``, in the same level-1 category.

Vectors of Elasticsearch-only candidates are read from Milvus by id; a
candidate that is not in the offer index yet has not been matched itself and
is skipped (it finds this product when its own turn comes). All calls are
blocking (run them in a thread); Milvus or Elasticsearch being unavailable
raises ``RecoverableError``.

Several workers match concurrently (products are keyed by product id, so two
products of one group can be matched at once by two workers), and each
regrouping is a read-modify-write of the neighbours' documents. So reads
return each document's ``(_seq_no, _primary_term)`` (``Version``) and writes
are conditional on it (``if_seq_no``/``if_primary_term``; a product's first
document is a ``create``): a write that lost the race raises ``WriteConflict``
(Elasticsearch's 409), and the matcher re-reads and recomputes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch
from pymilvus import MilvusClient, MilvusException

from catstream.errors import RecoverableError
from catstream.settings import Settings
from triton_models.matcher.features import MatchRecord, compact
from workers.milvus_collection import CollectionSpec, connect
from workers.milvus_filters import Filter, binds_templates
from workers.offer_index import ensure_offer_index, offer_index

T = TypeVar("T")
QUERY_TIMEOUT_S = 10.0
Version = tuple[int, int]  # an offer document's (_seq_no, _primary_term)


class WriteConflict(Exception):
    """Another worker changed (or created, or deleted) an offer document since it was read."""

    def __init__(self, product_ids: list[str], written: list[str] | None = None) -> None:
        super().__init__(f"offer documents changed concurrently: {', '.join(product_ids[:5])}")
        self.product_ids = product_ids
        self.written = written or []  # what the same request did write (a bulk is no transaction)


@dataclass
class Vectors:
    text: list[float] | None
    image: list[float] | None


class MatchBackends:
    """Milvus and the offer index, as the matching agent uses them."""

    def __init__(
        self,
        settings: Settings,
        es: Elasticsearch,
        milvus: MilvusClient | None = None,
    ) -> None:
        self.settings = settings
        self.es = es
        self.index = offer_index(settings)
        self.spec = CollectionSpec.from_settings(settings)
        self._milvus = milvus
        self._binds: bool | None = None
        self._ready = False

    # ------------------------------------------------------------------ Milvus

    @property
    def milvus(self) -> MilvusClient:
        if self._milvus is None:
            self._milvus = connect(self.settings)
        return self._milvus

    def _milvus_call(self, what: str, request: Callable[[], T]) -> T:
        try:
            if self._binds is None:
                self._binds = binds_templates(self.milvus, self.spec.name)
            return request()
        except MilvusException as exc:
            self._milvus, self._binds = None, None
            raise RecoverableError(
                "milvus", f"{what}: {exc}; retrying when Milvus answers"
            ) from exc

    def in_milvus(self, product_id: str) -> bool:
        """Whether the Milvus sink has written the product (so a kNN search finds it)."""
        where = Filter("product_id == {pid}", {"pid": product_id})
        rows = self._milvus_call(
            "looking the product up in Milvus",
            lambda: self.milvus.query(
                self.spec.name,
                **where.kwargs(self._binds is not False),
                output_fields=["product_id"],
                timeout=QUERY_TIMEOUT_S,
            ),
        )
        return bool(rows)

    def nearest(
        self,
        product_id: str,
        vectors: Vectors,
        cat_l1: int | None,
        k: int,
        with_vectors: bool = True,
    ) -> dict[str, Vectors]:
        """The k nearest products by text (and image) vector; ``with_vectors=False``
        reads ids only (their ``Vectors`` are empty)."""
        clauses: list[str] = ["product_id != {pid}"]
        params: dict[str, Any] = {"pid": product_id}
        if cat_l1:
            clauses.append("cat_l1 == {cat}")
            params["cat"] = cat_l1
        where = Filter(" and ".join(clauses), params)
        found: dict[str, Vectors] = {}
        searches = [("text_vector", vectors.text, where)]
        if vectors.image is not None:
            searches.append(("image_vector", vectors.image, where.also("has_image == true")))
        for field_name, vector, expr in searches:
            if vector is None:
                continue
            hits = self._milvus_call(
                "searching Milvus for candidates",
                lambda f=field_name, v=vector, e=expr: self.milvus.search(  # type: ignore[misc]
                    self.spec.name,
                    data=[v],
                    anns_field=f,
                    **e.kwargs(self._binds is not False),
                    limit=k,
                    output_fields=(
                        ["text_vector", "image_vector", "has_image"]
                        if with_vectors
                        else ["product_id"]
                    ),
                    search_params={"metric_type": "COSINE"},
                    timeout=QUERY_TIMEOUT_S,
                ),
            )
            for hit in hits[0]:
                found.setdefault(
                    str(hit["product_id"]),
                    _vectors(hit["entity"]) if with_vectors else Vectors(None, None),
                )
        return found

    def vectors_of(self, product_ids: list[str]) -> dict[str, Vectors]:
        if not product_ids:
            return {}
        where = Filter("product_id in {ids}", {"ids": product_ids})
        rows = self._milvus_call(
            "reading candidate vectors from Milvus",
            lambda: self.milvus.query(
                self.spec.name,
                **where.kwargs(self._binds is not False),
                output_fields=["product_id", "text_vector", "image_vector", "has_image"],
                timeout=QUERY_TIMEOUT_S,
            ),
        )
        return {str(row["product_id"]): _vectors(row) for row in rows}

    # ---------------------------------------------------------- Elasticsearch

    def _es_call(self, what: str, request: Callable[[], T]) -> T:
        try:
            if not self._ready:
                ensure_offer_index(self.es, self.settings)
                self._ready = True
            return request()
        except ApiError as exc:
            if exc.meta.status in (429,) or exc.meta.status >= 500:
                raise RecoverableError(
                    "elasticsearch", f"{what}: {exc.meta.status} {exc.message}; retrying"
                ) from exc
            raise
        except TransportError as exc:
            raise RecoverableError(
                "elasticsearch",
                f"{what}: cannot reach {self.settings.elasticsearch_url} "
                f"({type(exc).__name__}); check that Elasticsearch is up",
            ) from exc

    def lexical(self, record: MatchRecord, cat_l1: int | None, k: int) -> list[str]:
        should: list[dict[str, Any]] = []
        brand, model = compact(record.brand), compact(record.model_number)
        if brand and model:
            should.append(
                {
                    "bool": {
                        "filter": [{"term": {"brand": brand}}, {"term": {"model_number": model}}]
                    }
                }
            )
        if model and len(model) >= 4:
            should.append({"term": {"model_number": {"value": model, "boost": 2.0}}})
        codes = sorted(record.codes)
        if codes:
            should.append({"terms": {"codes": codes, "boost": 5.0}})
        if record.title.strip():
            should.append(
                {
                    "more_like_this": {
                        "fields": ["title"],
                        "like": record.title,
                        "min_term_freq": 1,
                        "min_doc_freq": 1,
                        "max_query_terms": 25,
                        "minimum_should_match": "30%",
                    }
                }
            )
        if not should:
            return []
        filters: list[dict[str, Any]] = [{"term": {"cat_l1": cat_l1}}] if cat_l1 else []
        query = {
            "bool": {
                "should": should,
                "minimum_should_match": 1,
                "filter": filters,
                "must_not": [{"ids": {"values": [record.product_id]}}],
            }
        }
        response = self._es_call(
            "searching the offer index for candidates",
            lambda: self.es.search(index=self.index, query=query, size=k, source=False),
        )
        return [str(hit["_id"]) for hit in response["hits"]["hits"]]

    def documents(self, product_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Realtime reads of offer documents (absent ones are left out)."""
        return self.read(product_ids)[0]

    def read(
        self, product_ids: list[str], source: bool = True
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Version]]:
        """Realtime reads: (id → document, id → its version), absent ones left out."""
        if not product_ids:
            return {}, {}
        response = self._es_call(
            "reading offer documents",
            lambda: self.es.mget(index=self.index, ids=sorted(set(product_ids)), source=source),
        )
        found = [doc for doc in response["docs"] if doc.get("found")]
        documents = {str(doc["_id"]): dict(doc.get("_source") or {}) for doc in found}
        versions = {
            str(doc["_id"]): (int(doc["_seq_no"]), int(doc["_primary_term"])) for doc in found
        }
        return documents, versions

    def versions(self, product_ids: list[str]) -> dict[str, Version]:
        """The current version of each offer document (absent ones left out)."""
        return self.read(product_ids, source=False)[1]

    def write(
        self,
        upserts: dict[str, dict[str, Any]],
        deletes: list[str],
        expected: dict[str, Version],
    ) -> dict[str, Version]:
        """Write ``upserts`` and delete ``deletes`` if each is still at its ``expected``
        version (a document without one must not exist yet); visible to search on return.

        Returns the written documents' new versions. Raises ``WriteConflict`` when any
        document had changed: the others are written all the same (a bulk request is not
        a transaction), so the caller re-reads and recomputes from what is stored. The
        deletes go last, in a request of their own, and only once every upsert is
        written: a removed product's document is the only record of which neighbours
        still point at it, so it must outlive a regrouping that lost a race.
        """
        operations: list[dict[str, Any]] = []
        for product_id, source in sorted(upserts.items()):
            operations.append(_conditional("index", self.index, product_id, expected))
            operations.append(source)
        written, conflicts = self._bulk(operations)
        if conflicts:
            raise WriteConflict(conflicts, written=sorted(written))
        removals = [_conditional("delete", self.index, pid, expected) for pid in deletes]
        _, conflicts = self._bulk(removals)
        if conflicts:
            raise WriteConflict(conflicts, written=sorted(written))
        return written

    def _bulk(self, operations: list[dict[str, Any]]) -> tuple[dict[str, Version], list[str]]:
        """One bulk request: (the new versions of what it wrote, the ids that conflicted)."""
        if not operations:
            return {}, []
        response = self._es_call(
            "writing offer documents",
            lambda: self.es.bulk(operations=operations, refresh="wait_for"),
        )
        written: dict[str, Version] = {}
        conflicts: list[str] = []
        failed: list[dict[str, Any]] = []
        for item in response["items"]:
            for kind, result in item.items():
                status = int(result.get("status", 200))
                if status == 409:
                    conflicts.append(str(result.get("_id")))
                elif status == 404 and kind == "delete":
                    continue  # already gone
                elif status >= 300:
                    failed.append(result)
                elif kind != "delete":
                    written[str(result["_id"])] = (
                        int(result["_seq_no"]),
                        int(result["_primary_term"]),
                    )
        if failed:
            raise RecoverableError(
                "elasticsearch", f"offer index refused {len(failed)} writes: {failed[:2]}"
            )
        return written, conflicts

    def group_members(self, offer_group: str, size: int) -> list[str]:
        """The product ids of one offer group (at most ``size``)."""
        response = self._es_call(
            "reading an offer group",
            lambda: self.es.search(
                index=self.index,
                query={"bool": {"filter": [{"term": {"offer_group": offer_group}}]}},
                size=size,
                source=False,
            ),
        )
        return sorted(str(hit["_id"]) for hit in response["hits"]["hits"])

    def group_sizes(self) -> dict[int, int]:
        """Group size → how many groups, over the whole offer index."""
        response = self._es_call(
            "counting offer groups",
            lambda: self.es.search(
                index=self.index,
                size=0,
                aggs={"groups": {"terms": {"field": "offer_group", "size": 10000}}},
            ),
        )
        sizes: dict[int, int] = {}
        for bucket in response["aggregations"]["groups"]["buckets"]:
            size = int(bucket["doc_count"])
            sizes[size] = sizes.get(size, 0) + 1
        return sizes


def _vectors(entity: dict[str, Any]) -> Vectors:
    text = entity.get("text_vector")
    image = entity.get("image_vector") if entity.get("has_image") else None
    return Vectors(
        [float(x) for x in text] if text is not None else None,
        [float(x) for x in image] if image is not None else None,
    )


def _conditional(
    kind: str, index: str, product_id: str, expected: dict[str, Version]
) -> dict[str, Any]:
    """A bulk action that applies only if the document is still as it was read."""
    version = expected.get(product_id)
    if version is None:  # never read: it must not exist (a product's first document)
        return {"create" if kind == "index" else kind: {"_index": index, "_id": product_id}}
    seq_no, primary_term = version
    return {
        kind: {
            "_index": index,
            "_id": product_id,
            "if_seq_no": seq_no,
            "if_primary_term": primary_term,
        }
    }


def search_keys(record: MatchRecord) -> dict[str, Any]:
    """The offer document's searchable fields for ``record``."""
    return {
        "brand": compact(record.brand) or None,
        "model_number": compact(record.model_number) or None,
        "codes": sorted(record.codes),
    }
