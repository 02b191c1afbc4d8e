"""The Milvus sink: ``products.embeddings`` → one vector row per product.

``add`` validates an event into a row and buffers it by product id, so within
a batch the last event per product wins: an upsert after a delete upserts, a
delete after an upsert deletes. ``flush`` upserts and deletes the buffer in
chunks of ``settings.milvus_batch_size``.

Ordering: every row carries the event's ``updated_at``, and an older event never
replaces a newer row (as in Elasticsearch). Within a batch an older upsert does
not displace a newer buffered one; at flush the sink reads the stored
``updated_at`` of the buffered products and drops each upsert older than what
is stored (equal is applied: a replay, or a re-embedding by a new model, of the
same version). Products are keyed, so one sink instance owns a product's
partition and nothing writes between that read and the upsert.

Milvus replaces a row on upsert of the same primary key, so a replay after a
crash rewrites the same rows and never duplicates them.

Ids are data: rows are read and deleted with parameterised filters
(``workers/milvus_filters.py``), never with an expression pasted from the ids.

Any Milvus failure during ``flush`` is a ``RecoverableError``: the buffer is
kept, the runner backs off and retries, and offsets are not committed until
Milvus has acknowledged the writes. A dead Milvus delays, never loses.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from pymilvus import MilvusClient, MilvusException

from catstream.errors import InvalidMessage, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import SINK_WRITES, STALE_EVENTS
from catstream.settings import Settings
from schemas.events import ProductEmbedding
from schemas.vectors import decode_vector
from workers.milvus_collection import (
    CATEGORY_PATH_MAX,
    MAX_LEVELS,
    MODEL_VERSION_MAX,
    PRODUCT_ID_MAX,
    CollectionSpec,
    connect,
    ensure_collection,
)
from workers.milvus_filters import Filter, binds_templates
from workers.sink import Refused, SinkMessage
from workers.sink_runner import SinkRunner, SinkRunnerConfig

SINK_NAME = "milvus"
MILVUS_ERRORS: tuple[type[BaseException], ...] = (
    MilvusException,
    grpc.RpcError,
    ConnectionError,
    TimeoutError,
)

# A hung Milvus must surface as a retry, not a sink blocked forever mid-flush.
WRITE_TIMEOUT_S = 30.0

Row = dict[str, Any]


def embedding_row(event: ProductEmbedding, spec: CollectionSpec) -> Row:
    """The collection row for one embedding event; ``InvalidMessage`` if it cannot be one."""
    text = _vector(event.text_embedding, spec.text_dim, "text_embedding", event.product_id)
    image = (
        _vector(event.image_embedding, spec.image_dim, "image_embedding", event.product_id)
        if event.image_embedding is not None
        else None
    )
    levels = _category_levels(event.category_ids, event.product_id)
    _check_varchar(event.product_id, PRODUCT_ID_MAX, "product_id", event.product_id)
    _check_varchar(event.model_version, MODEL_VERSION_MAX, "model_version", event.product_id)
    if not 0 <= (event.updated_at or 0) < 2**63:
        raise InvalidMessage(
            f"updated_at {event.updated_at} of {event.product_id!r} is not epoch milliseconds: "
            "fix the feed's timestamp for this product and republish it",
            error_class="UpdatedAtRange",
        )
    row: Row = {
        "product_id": event.product_id,
        "text_vector": text,
        "image_vector": image if image is not None else [0.0] * spec.image_dim,
        "has_image": image is not None,
        "category_path": fit_utf8(" > ".join(event.category_path), CATEGORY_PATH_MAX),
        "model_version": event.model_version,
        "updated_at": event.updated_at or 0,
    }
    row.update({f"cat_l{level}": cat for level, cat in enumerate(levels, start=1)})
    return row


def fit_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 without splitting a character
    (Milvus VARCHAR limits may count bytes; the path is for display only)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _check_varchar(value: str, max_bytes: int, field: str, product_id: str) -> None:
    """Milvus would reject the whole batch, and a rejected batch is retried forever."""
    if len(value.encode("utf-8")) > max_bytes:
        raise InvalidMessage(
            f"{field} of {product_id[:80]!r} is longer than the {max_bytes} UTF-8 bytes the "
            f"Milvus collection stores: shorten it at the source and republish the product",
            error_class="FieldTooLong",
        )


def _vector(encoded: str, dim: int, field: str, product_id: str) -> list[float]:
    """The decoded vector, checked for what Milvus would refuse or search badly."""
    vector = decode_vector(encoded)
    _check_vector(vector, dim, field, product_id)
    return vector.tolist()


def _check_vector(vector: NDArray[np.float32], dim: int, field: str, product_id: str) -> None:
    if len(vector) != dim:
        raise InvalidMessage(
            f"{field} of {product_id!r} has {len(vector)} dimensions, the Milvus collection "
            f"expects {dim}: re-embed the product with the current encoder and republish it",
            error_class="EmbeddingDimension",
        )
    if not np.isfinite(vector).all():
        raise InvalidMessage(
            f"{field} of {product_id!r} contains NaN or infinity: check the encoder's "
            "input for this product and republish it",
            error_class="EmbeddingNotFinite",
        )
    if not vector.any():
        raise InvalidMessage(
            f"{field} of {product_id!r} is all zeros, which has no cosine direction: "
            "check the encoder's input for this product and republish it",
            error_class="EmbeddingZero",
        )


def _category_levels(category_ids: Sequence[int], product_id: str) -> list[int]:
    """Taxonomy id per level, padded with 0 (= no category at that level)."""
    if len(category_ids) > MAX_LEVELS:
        raise InvalidMessage(
            f"category path of {product_id!r} has {len(category_ids)} levels, the Milvus "
            f"collection holds {MAX_LEVELS}: check the taxonomy the categoriser was trained on",
            error_class="CategoryTooDeep",
        )
    if any(cat <= 0 or cat >= 2**63 for cat in category_ids):
        raise InvalidMessage(
            f"category ids {list(category_ids)} of {product_id!r} must be positive int64 "
            "taxonomy ids: check the categoriser's label map",
            error_class="CategoryId",
        )
    return [*category_ids, *([0] * (MAX_LEVELS - len(category_ids)))]


def parse_message(message: SinkMessage, spec: CollectionSpec) -> tuple[str, Row | None]:
    """(product id, row) for an upsert, (product id, None) for a tombstone."""
    key = message.product_id
    if message.value is None:
        if not key:
            raise InvalidMessage(
                "tombstone without a key cannot say which product to delete: "
                "producers must key embeddings by product_id",
                error_class="TombstoneWithoutKey",
            )
        return key, None
    try:
        event = ProductEmbedding.model_validate_json(message.value)
    except ValidationError as exc:
        raise InvalidMessage(
            f"not a valid ProductEmbedding ({exc.error_count()} errors: "
            f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}): fix the producer of "
            "products.embeddings, then replay this dead letter",
            error_class="InvalidEmbeddingEvent",
        ) from exc
    if key is not None and key != event.product_id:
        # A mismatched key breaks per-product ordering (and so which event wins).
        raise InvalidMessage(
            f"message key {key!r} differs from product_id {event.product_id!r}: "
            "producers must key embeddings by product_id",
            error_class="KeyMismatch",
        )
    return event.product_id, embedding_row(event, spec)


def is_older(row: Row, current_updated_at: int | None) -> bool:
    """Whether ``row`` is older than the product's current version (None: it has
    none); an equal version is not older, so a replay rewrites the same row."""
    return current_updated_at is not None and int(row["updated_at"]) < current_updated_at


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class MilvusSink:
    """Buffers embedding rows by product id and writes them to Milvus on ``flush``."""

    name = SINK_NAME

    def __init__(self, settings: Settings, spec: CollectionSpec | None = None) -> None:
        self.settings = settings
        self.spec = spec or CollectionSpec.from_settings(settings)
        self.log = get_logger(__name__, sink=self.name, collection=self.spec.name)
        self._buffer: dict[str, Row | None] = {}
        self._client: MilvusClient | None = None
        self._server_binds = True  # whether Milvus binds filter_params; asked on connect

    def add(self, message: SinkMessage) -> None:
        product_id, row = parse_message(message, self.spec)
        buffered = self._buffer.get(product_id)
        if row is not None and buffered is not None and is_older(row, buffered["updated_at"]):
            STALE_EVENTS.inc()
            return
        # Re-inserting moves the product to the end: the dict keeps the latest event.
        self._buffer.pop(product_id, None)
        self._buffer[product_id] = row

    @property
    def pending(self) -> dict[str, Row | None]:
        """What the next flush writes: product id → row, or None to delete."""
        return dict(self._buffer)

    def flush(self) -> list[Refused]:
        if not self._buffer:
            return []
        candidates = [row for row in self._buffer.values() if row is not None]
        deletes = [pid for pid, row in self._buffer.items() if row is None]
        try:
            client = self._connected()
            stored = self._stored_versions(client, [row["product_id"] for row in candidates])
            upserts = [
                row for row in candidates if not is_older(row, stored.get(row["product_id"]))
            ]
            for chunk in _chunks(upserts, self.settings.milvus_batch_size):
                client.upsert(self.spec.name, chunk, timeout=WRITE_TIMEOUT_S)
            for chunk in _chunks(deletes, self.settings.milvus_batch_size):
                by_id = Filter("product_id in {ids}", {"ids": chunk})
                client.delete(
                    self.spec.name, **by_id.kwargs(self._server_binds), timeout=WRITE_TIMEOUT_S
                )
        except MILVUS_ERRORS as exc:
            # Keep the buffer: the retry rewrites all of it (upserts are idempotent).
            # Reconnect on retry too: a restarted Milvus may have lost the collection.
            self._drop_client()
            raise RecoverableError("milvus", f"writing to {self.spec.name!r}: {exc}") from exc
        STALE_EVENTS.inc(len(candidates) - len(upserts))
        SINK_WRITES.labels(sink=self.name, op="upsert").inc(len(upserts))
        SINK_WRITES.labels(sink=self.name, op="delete").inc(len(deletes))
        self.log.debug(
            "milvus_flushed",
            upserts=len(upserts),
            deletes=len(deletes),
            stale=len(candidates) - len(upserts),
        )
        self._buffer.clear()
        return []  # every row Milvus can be sent is valid by construction (add() checks it)

    def close(self) -> None:
        self._drop_client()

    def _stored_versions(self, client: MilvusClient, product_ids: list[str]) -> dict[str, int]:
        """product id → the ``updated_at`` Milvus holds, for those of ``product_ids`` it has."""
        stored: dict[str, int] = {}
        for chunk in _chunks(product_ids, self.settings.milvus_batch_size):
            by_id = Filter("product_id in {ids}", {"ids": chunk})
            rows = client.query(
                self.spec.name,
                **by_id.kwargs(self._server_binds),
                output_fields=["updated_at"],
                consistency_level="Strong",
                timeout=WRITE_TIMEOUT_S,
            )
            stored.update({str(r["product_id"]): int(r["updated_at"]) for r in rows})
        return stored

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # Closing a connection to a dead server may fail; nothing is left to release.
            with contextlib.suppress(*MILVUS_ERRORS):
                client.close()

    def _connected(self) -> MilvusClient:
        """Connect (and prepare the collection) on first use, so a sink can start
        while Milvus is still down and catch up once it answers."""
        if self._client is None:
            client = connect(self.settings)
            ensure_collection(client, self.spec)
            self._server_binds = binds_templates(client, self.spec.name)
            self._client = client
        return self._client


def build_milvus_sink_runner(settings: Settings, **config: Any) -> SinkRunner:
    """The worker's Milvus sink: consumes the embeddings topic as one static member."""
    runner_config = SinkRunnerConfig(
        topics=[settings.topic("embeddings")],
        group_id=f"{settings.app_id}-milvus-sink",
        instance_id=settings.worker_instance_id,
        **config,
    )
    return SinkRunner(MilvusSink(settings), settings, runner_config)


def run_milvus_sink(settings: Settings, stop_event: threading.Event) -> None:
    """Run the Milvus sink until ``stop_event`` is set (for a worker thread)."""
    runner = build_milvus_sink_runner(settings)

    def stop_when_asked() -> None:
        stop_event.wait()
        runner.stop()

    threading.Thread(target=stop_when_asked, name="milvus-sink-stop", daemon=True).start()
    runner.run()
