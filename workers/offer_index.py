"""The offer index: one Elasticsearch document per matched product, owned by the matching agent.

``<elasticsearch_index>-offers`` holds what matching needs and what the offers
API shows, so neither depends on how far the product sink has got:

- the fields candidates are searched on: ``brand`` and ``model_number``
  (compacted: lower-case letters and digits), product ``codes`` (GTIN/EAN/UPC/MPN),
  ``title`` (text, for ``more_like_this``), ``cat_l1`` (the predicted level-1 category);
- the fields the pair model scores and the API shows: merchant, price, currency,
  url, size, colour, image URL;
- the match graph: ``edges`` (neighbour → score), ``conflicts`` (variants it
  must never be grouped with), ``neighbours`` (the edge ids, searchable) and
  ``offer_group``.

Reads are realtime (``mget``); the agent writes with ``refresh=wait_for``, so
the next product's candidate search sees this one.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import BadRequestError, Elasticsearch

from catstream.logs import get_logger
from catstream.settings import Settings

log = get_logger(__name__)

OFFER_PROPERTIES: dict[str, Any] = {
    "product_id": {"type": "keyword"},
    "merchant": {"type": "keyword"},
    "title": {"type": "text"},
    "brand": {"type": "keyword"},
    "model_number": {"type": "keyword"},
    "codes": {"type": "keyword"},
    "cat_l1": {"type": "long"},
    "price": {"type": "double"},
    "currency": {"type": "keyword"},
    "url": {"type": "keyword", "index": False},
    "image_url": {"type": "keyword", "index": False},
    "size": {"type": "keyword"},
    "colour": {"type": "keyword"},
    "record": {"type": "object", "enabled": False},
    "edges": {"type": "object", "enabled": False},
    "conflicts": {"type": "keyword"},
    "neighbours": {"type": "keyword"},
    "offer_group": {"type": "keyword"},
    "updated_at": {"type": "long"},
    "matched_at": {"type": "long"},
    "fingerprint": {"type": "keyword"},
}


def offer_index(settings: Settings) -> str:
    return f"{settings.elasticsearch_index}-offers"


def ensure_offer_index(client: Elasticsearch, settings: Settings) -> str:
    """Create the offer index (or add new fields to it); idempotent."""
    index = offer_index(settings)
    mappings = {"dynamic": "strict", "properties": OFFER_PROPERTIES}
    if not client.indices.exists(index=index):
        try:
            client.indices.create(index=index, settings={"number_of_shards": 1}, mappings=mappings)
            log.info("index_created", index=index)
            return index
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise
    client.indices.put_mapping(index=index, properties=OFFER_PROPERTIES)
    return index
