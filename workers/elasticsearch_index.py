"""The Elasticsearch product index: client, mapping and idempotent creation.

One document per product (``_id`` = product id) holds two field groups written by
two topics: the normalised product (top-level fields) and its latest prediction
(``category`` and ``prediction``). Each group keeps its own version in
``versions`` so neither source can regress or clobber the other (see
``workers/elasticsearch_plan.py``, and ``workers/elasticsearch_script.py``, which
applies the same rules on the server).

Deletes leave a tombstone in a second, small index (``<index>-deleted``): ES
forgets external-version tombstones after ``gc_deletes`` (60 s, and noida-db
not at all), so a late, older upsert would otherwise resurrect a deleted product.
"""

from __future__ import annotations

from typing import Any

from elastic_transport import HttpHeaders, Urllib3HttpNode
from elastic_transport._node import NodeApiResponse  # the node API's return type
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import BadRequestError, Elasticsearch

from catstream.logs import get_logger
from catstream.settings import Settings

CATEGORY_LEVELS = 7
PATH_SEPARATOR = " > "

_log = get_logger(__name__)

# A category path "A > B > C" is indexed as the tokens "A", "A > B", "A > B > C",
# so a term query on any ancestor path finds every product below it.
ANALYSIS: dict[str, Any] = {
    "tokenizer": {"category_path": {"type": "path_hierarchy", "delimiter": ">"}},
    "analyzer": {
        "category_path": {"type": "custom", "tokenizer": "category_path", "filter": ["trim"]}
    },
}


def _category_mapping() -> dict[str, Any]:
    levels = {f"l{n}": {"type": "keyword"} for n in range(1, CATEGORY_LEVELS + 1)}
    return {
        "properties": {
            "path": {
                "type": "text",
                "analyzer": "category_path",
                "search_analyzer": "keyword",
                "fields": {"keyword": {"type": "keyword"}},
            },
            # long: plain-format taxonomies give categories 48-bit stable ids (path_id).
            "ids": {"type": "long"},
            "id": {"type": "long"},
            "level": {"type": "integer"},
            **levels,
        }
    }


def _text_with_keyword() -> dict[str, Any]:
    return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


PRODUCT_PROPERTIES: dict[str, Any] = {
    "product_id": {"type": "keyword"},
    "updated_at": {"type": "date", "format": "epoch_millis"},
    "network": {"type": "keyword"},
    "merchant": {"type": "keyword"},
    "title": _text_with_keyword(),
    "description": {"type": "text"},
    "brand": _text_with_keyword(),
    "raw_category": _text_with_keyword(),
    "feed_category": _category_mapping(),
    "gender": {"type": "keyword"},
    "size": {"type": "keyword"},
    "colour": {"type": "keyword"},
    "price": {"type": "scaled_float", "scaling_factor": 100},
    "currency": {"type": "keyword"},
    "warnings": {"type": "keyword"},
    "image_urls": {"type": "keyword", "index": False},
    "url": {"type": "keyword", "index": False},
    "fingerprint": {"type": "keyword"},
    # Kept for display and debugging only: feeds send anything here, and indexing
    # it would let one merchant's odd field explode the mapping.
    "extra": {"type": "object", "enabled": False},
    "raw": {"type": "object", "enabled": False},
    # The predicted category: what catstream says the product is.
    "category": _category_mapping(),
    "prediction": {
        "properties": {
            "model_name": {"type": "keyword"},
            "model_version": {"type": "keyword"},
            "score": {"type": "float"},
            "confidence": {"type": "float"},
            "uncertainty": {"type": "float"},
            "needs_review": {"type": "boolean"},
            "image_failed": {"type": "boolean"},
            "carried_forward": {"type": "boolean"},
            "fingerprint": {"type": "keyword"},
            "updated_at": {"type": "date", "format": "epoch_millis"},
            "predicted_at": {"type": "date", "format": "epoch_millis"},
            "categories": {"type": "object", "enabled": False},
        }
    },
    # The product's offer group (the matching agent, via products.matches; issue 12).
    "offer_group": {"type": "keyword"},
    "versions": {
        "properties": {
            "normalised": {"type": "long"},
            "prediction": {"type": "long"},
            "prediction_at": {"type": "long"},
            "offer": {"type": "long"},
            "offer_at": {"type": "long"},
        }
    },
}

TOMBSTONE_PROPERTIES: dict[str, Any] = {
    "product_id": {"type": "keyword"},
    "deleted_at": {"type": "long"},
}


def tombstone_index(settings: Settings) -> str:
    return f"{settings.elasticsearch_index}-deleted"


class CompatibleWith8Node(Urllib3HttpNode):
    """Asks for the 8.x REST API, which Elasticsearch 8.x and 9.x servers both accept.

    The 9.x Python client sends ``compatible-with=9``, which an 8.x server rejects
    with 400 ``media_type_header_exception``; 9.x servers answer 8.x-compatible
    requests unchanged for every API used here.
    """

    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        if headers is not None:
            headers = headers.copy()
            for name in ("accept", "content-type"):
                if name in headers:
                    headers[name] = headers[name].replace("compatible-with=9", "compatible-with=8")
        return super().perform_request(method, target, body, headers, request_timeout)


def elasticsearch_client(settings: Settings, *, timeout_s: float = 10.0) -> Elasticsearch:
    """A client for ``settings.elasticsearch_url`` with its credentials and CA.

    Retries are left to the caller (the sink runner backs off), so one slow node
    cannot stall a flush for the client's whole retry budget.
    """
    options: dict[str, Any] = {
        "request_timeout": timeout_s,
        "max_retries": 0,
        "node_class": CompatibleWith8Node,
    }
    if settings.elasticsearch_api_key is not None:
        options["api_key"] = settings.elasticsearch_api_key.get_secret_value()
    elif settings.elasticsearch_username:
        password = settings.elasticsearch_password
        options["basic_auth"] = (
            settings.elasticsearch_username,
            password.get_secret_value() if password else "",
        )
    if settings.elasticsearch_ca is not None:
        options["ca_certs"] = str(settings.elasticsearch_ca)
    return Elasticsearch(settings.elasticsearch_url, **options)


def ensure_indices(client: Elasticsearch, settings: Settings) -> None:
    """Create (or extend) the templates and indices; safe to call at every start."""
    _ensure(
        client,
        settings.elasticsearch_index,
        {"analysis": ANALYSIS, "number_of_shards": 1},
        {"dynamic": "strict", "properties": PRODUCT_PROPERTIES},
    )
    _ensure(
        client,
        tombstone_index(settings),
        {"number_of_shards": 1},
        {"dynamic": "strict", "properties": TOMBSTONE_PROPERTIES},
    )


def _ensure(
    client: Elasticsearch, index: str, index_settings: dict[str, Any], mappings: dict[str, Any]
) -> None:
    # The template makes a re-created index (after an operator deletes it) come
    # back with the same mapping even if a write races ahead of this code.
    client.indices.put_index_template(
        name=index,
        index_patterns=[index],
        template={"settings": index_settings, "mappings": mappings},
        priority=200,
    )
    if not client.indices.exists(index=index):
        try:
            client.indices.create(index=index, settings=index_settings, mappings=mappings)
            _log.info("index_created", index=index)
            return
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
    try:
        # Existing index: add fields a newer release introduced (additive only).
        client.indices.put_mapping(index=index, properties=mappings["properties"])
    except BadRequestError as exc:
        raise RuntimeError(
            f"index {index!r} has a mapping that conflicts with this release ({exc.message}); "
            "reindex into a new index and point CATSTREAM_ELASTICSEARCH_INDEX at it"
        ) from exc
