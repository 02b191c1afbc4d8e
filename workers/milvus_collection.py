"""The Milvus collection that holds product vectors: schema, index and creation.

One row per product, primary key ``product_id``:

* ``text_vector`` (384-d) and ``image_vector`` (1280-d), both COSINE-indexed.
  A product without an image gets a zero image vector and ``has_image = false``:
  milvus-lite accepts ``nullable`` vector fields but stores zeros anyway, and
  Milvus releases before 2.6 reject them, so the flag is the portable way.
  Every image search filters on ``has_image``.
* ``cat_l1`` .. ``cat_l7``: the taxonomy id of the product's category at each
  level (0 where its path is shallower), so "same category at level N" is a
  scalar filter. ``cat_l1`` is the partition key: a level-filtered search only
  scans the partitions of its top-level category.
* ``category_path``, ``model_version``, ``updated_at`` for display and audits.

``ensure_collection`` is idempotent and safe when several processes start at
once: losing the creation race is not an error, and a collection left without
its indexes (its creator failed between the two calls) gets them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pymilvus import DataType, MilvusClient, MilvusException

from catstream.errors import CatstreamError, RecoverableError
from catstream.logs import get_logger
from catstream.settings import Settings

TEXT_DIM = 384
IMAGE_DIM = 1280
MAX_LEVELS = 7
PRODUCT_ID_MAX = 256
CATEGORY_PATH_MAX = 2048
MODEL_VERSION_MAX = 128
CREATE_ATTEMPTS = 4
VECTOR_FIELDS = ("text_vector", "image_vector")
LEVEL_FIELDS = tuple(f"cat_l{level}" for level in range(1, MAX_LEVELS + 1))
SCALAR_FIELDS = ("has_image", *LEVEL_FIELDS, "category_path", "model_version", "updated_at")

# Build parameters per index type; FLAT is exact (small collections), IVF_FLAT
# and HNSW are approximate and scale to millions of rows.
INDEX_BUILD_PARAMS: dict[str, dict[str, int]] = {
    "FLAT": {},
    "IVF_FLAT": {"nlist": 1024},
    "HNSW": {"M": 16, "efConstruction": 200},
}
# Matching search-time parameters (recall vs latency), used by similar products.
INDEX_SEARCH_PARAMS: dict[str, dict[str, int]] = {
    "FLAT": {},
    "IVF_FLAT": {"nprobe": 32},
    "HNSW": {"ef": 256},
}

log = get_logger(__name__)


class CollectionMismatch(CatstreamError):
    """An existing collection has a schema this code cannot write to."""


def quiet_pymilvus() -> None:
    """pymilvus logs every failed RPC with a traceback at ERROR; catstream logs
    its own retries, so during an outage that would only bury the useful lines."""
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


def connect(settings: Settings, timeout_s: float = 10.0) -> MilvusClient:
    """A client for ``settings.milvus_uri``; Milvus down → ``RecoverableError``."""
    quiet_pymilvus()
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else ""
    try:
        return MilvusClient(uri=settings.milvus_uri, token=token, timeout=timeout_s)
    except MilvusException as exc:
        raise RecoverableError(
            "milvus",
            f"cannot connect to {settings.milvus_uri} ({exc}); start it "
            "(`catstream stack up`) or set CATSTREAM_MILVUS_URI",
        ) from exc


@dataclass(frozen=True)
class CollectionSpec:
    """What the collection looks like; dimensions match the Triton encoders."""

    name: str
    index_type: str = "FLAT"
    text_dim: int = TEXT_DIM
    image_dim: int = IMAGE_DIM

    @classmethod
    def from_settings(cls, settings: Settings) -> CollectionSpec:
        return cls(name=settings.milvus_collection, index_type=settings.milvus_index_type)


def build_schema(spec: CollectionSpec) -> Any:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("product_id", DataType.VARCHAR, max_length=PRODUCT_ID_MAX, is_primary=True)
    schema.add_field("text_vector", DataType.FLOAT_VECTOR, dim=spec.text_dim)
    schema.add_field("image_vector", DataType.FLOAT_VECTOR, dim=spec.image_dim)
    schema.add_field("has_image", DataType.BOOL)
    schema.add_field("cat_l1", DataType.INT64, is_partition_key=True)
    for field in LEVEL_FIELDS[1:]:
        schema.add_field(field, DataType.INT64)
    schema.add_field("category_path", DataType.VARCHAR, max_length=CATEGORY_PATH_MAX)
    schema.add_field("model_version", DataType.VARCHAR, max_length=MODEL_VERSION_MAX)
    schema.add_field("updated_at", DataType.INT64)
    return schema


def build_index_params(spec: CollectionSpec, fields: tuple[str, ...] = VECTOR_FIELDS) -> Any:
    if spec.index_type not in INDEX_BUILD_PARAMS:
        raise ValueError(
            f"milvus index type {spec.index_type!r} is not supported; "
            f"set CATSTREAM_MILVUS_INDEX_TYPE to one of {', '.join(INDEX_BUILD_PARAMS)}"
        )
    params = MilvusClient.prepare_index_params()
    for field in fields:
        params.add_index(
            field_name=field,
            index_name=field,
            index_type=spec.index_type,
            metric_type="COSINE",
            params=INDEX_BUILD_PARAMS[spec.index_type],
        )
    return params


def ensure_collection(client: MilvusClient, spec: CollectionSpec) -> None:
    """Create (with indexes) and load the collection unless it exists; check it fits."""
    try:
        if not client.has_collection(spec.name):
            _create(client, spec)
        _check_existing(client, spec)
        _ensure_indexes(client, spec)
        client.load_collection(spec.name)
    except MilvusException as exc:
        raise RecoverableError("milvus", f"preparing collection {spec.name!r}: {exc}") from exc


def _create(client: MilvusClient, spec: CollectionSpec) -> None:
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            client.create_collection(
                spec.name,
                schema=build_schema(spec),
                index_params=build_index_params(spec),
                consistency_level="Strong",
            )
            log.info("milvus_collection_created", collection=spec.name, index=spec.index_type)
            return
        except MilvusException:
            # Another process may be creating it right now (milvus-lite then fails with
            # "File exists" before the collection is visible): give it time to finish.
            time.sleep(0.3 * attempt)
            if client.has_collection(spec.name):
                log.info("milvus_collection_created_elsewhere", collection=spec.name)
                return
            if attempt == CREATE_ATTEMPTS:
                raise


def _ensure_indexes(client: MilvusClient, spec: CollectionSpec) -> None:
    """Add the vector indexes a collection lacks.

    pymilvus creates the collection and its index in two calls, so a creator that
    fails between them (a lost race, a crash) leaves a collection with no index,
    which every later starter would otherwise accept as it is.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        missing = tuple(f for f in VECTOR_FIELDS if f not in client.list_indexes(spec.name))
        if not missing:
            return
        try:
            client.create_index(spec.name, build_index_params(spec, missing))
            log.info("milvus_index_created", collection=spec.name, fields=list(missing))
        except MilvusException:
            # Someone else is adding the same index: look again after a pause.
            if attempt == CREATE_ATTEMPTS:
                raise
            time.sleep(0.3 * attempt)


def _check_existing(client: MilvusClient, spec: CollectionSpec) -> None:
    """Refuse to write into a collection made for other vectors (wrong dims, old schema)."""
    description = client.describe_collection(spec.name)
    fields = {f["name"]: f for f in description.get("fields", [])}
    expected_dims = {"text_vector": spec.text_dim, "image_vector": spec.image_dim}
    problems = [
        f"missing field {name}"
        for name in ("product_id", *VECTOR_FIELDS, *SCALAR_FIELDS)
        if name not in fields
    ]
    for name, dim in expected_dims.items():
        actual = fields.get(name, {}).get("params", {}).get("dim")
        if actual is not None and int(actual) != dim:
            problems.append(f"{name} has dim {actual}, expected {dim}")
    if problems:
        raise CollectionMismatch(
            f"Milvus collection {spec.name!r} does not match catstream's schema "
            f"({'; '.join(problems)}): drop it so it is rebuilt from the embeddings topic, "
            "or set CATSTREAM_MILVUS_COLLECTION to a new name"
        )


def count_rows(client: MilvusClient, name: str) -> int:
    """Exact row count, seeing every acknowledged write (strong consistency)."""
    result = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(result[0]["count(*)"])
