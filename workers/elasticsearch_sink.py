"""The Elasticsearch sink: normalised products and predictions → one document each.

``flush()`` writes each buffered product with one bulk action, ``_bulk`` requests at
most ``elasticsearch_concurrency`` at a time and no more than
``elasticsearch_max_requests_per_s``:

* a product whose buffered events are all upserts (normalised, prediction, offer
  group) gets one scripted ``update`` (``workers/elasticsearch_script.py``): the
  server folds the events onto the stored document, so nothing is read first. The
  script needs the product's tombstone, read once per product (one document in an
  ``mget``) and then kept until the sink's partitions are revoked;
* a product with a delete among its events is read (its document and tombstone),
  planned (``workers/elasticsearch_plan.py``) and written conditionally, as the
  tombstone may be raised only when the delete applies.

Per item:

* success, or a stale event → the product leaves the buffer;
* 409 on the document (someone wrote it since we read it) → re-read and re-plan;
* 429 / rejected / 5xx → stays buffered, and ``RecoverableError`` makes the
  runner back off and flush again (only the failed products are re-sent);
* 400 (the document does not fit the mapping) → its normalised records are
  dead-lettered with the reason; its prediction is written without them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from catstream.errors import InvalidMessage, RecoverableError
from catstream.logs import get_logger
from catstream.metrics import SINK_CONFLICTS, SINK_WRITES, STALE_EVENTS
from catstream.settings import Settings
from workers.elasticsearch_documents import NormalisedUpsert, SinkEvent, decode
from workers.elasticsearch_index import elasticsearch_client, ensure_indices, tombstone_index
from workers.elasticsearch_plan import ProductPlan, StoredProduct, plan_product
from workers.elasticsearch_script import is_upsert, script_update
from workers.sink import Refused, SinkMessage
from workers.sink_runner import SinkRunner, SinkRunnerConfig

SINK_NAME = "elasticsearch"
MAX_REPLANS = 5
# Products whose tombstone the sink remembers (about 100 bytes each); the oldest go first.
MAX_KNOWN_TOMBSTONES = 200_000
_RECOVERABLE_STATUS = {408, 429, 500, 502, 503, 504}

T = TypeVar("T")


class RequestPacer:
    """Spaces requests to at most ``rate`` per second across threads."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Reserve the next slot; returns how long the caller must wait for it."""
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now

    def wait(self) -> None:
        pause = self.delay()
        if pause > 0:
            time.sleep(pause)


@dataclass(frozen=True, slots=True)
class _Buffered:
    message: SinkMessage
    event: SinkEvent | None


class ElasticsearchSink:
    """A ``workers.sink.Sink`` that keeps ``settings.elasticsearch_index`` current."""

    name = SINK_NAME

    def __init__(
        self,
        settings: Settings,
        *,
        client: Elasticsearch | None = None,
    ) -> None:
        self.settings = settings
        self.client = client or elasticsearch_client(settings)
        self.index = settings.elasticsearch_index
        self.tombstones = tombstone_index(settings)
        self.log = get_logger(__name__, sink=SINK_NAME, index=self.index)
        self._topics = (
            settings.topic("normalised"),
            settings.topic("predictions"),
            settings.topic("matches"),
        )
        self._pending: dict[str, list[_Buffered]] = {}
        self._pool = ThreadPoolExecutor(max(1, settings.elasticsearch_concurrency), "es-bulk")
        self._pacer = RequestPacer(settings.elasticsearch_max_requests_per_s)
        # Refused for good since the last successful flush; flush() hands them to the runner.
        self._refused: list[Refused] = []
        self._ready = False
        # product id → its tombstone's deleted_at (None: none), as read or written by this
        # sink since its partitions were last assigned (forget_tombstones).
        self._deleted_at: dict[str, int | None] = {}

    # ------------------------------------------------------------------ Sink API

    def add(self, message: SinkMessage) -> None:
        event = decode(message, *self._topics)
        product_id = message.product_id or ""
        self._pending.setdefault(product_id, []).append(_Buffered(message, event))

    def flush(self) -> list[Refused]:
        if self._pending:
            self._write_pending()
        refused, self._refused = self._refused, []
        return refused

    def _write_pending(self) -> None:
        self._call(self._ensure_ready)
        for _ in range(MAX_REPLANS):
            retry_now, failed = self._flush_round()
            if failed:
                raise RecoverableError(
                    "elasticsearch",
                    f"{len(failed)} products not written ({failed[0]}); "
                    "they stay buffered and are retried with back-off",
                )
            if not retry_now:
                return
        raise RecoverableError(
            "elasticsearch",
            f"{len(self._pending)} products kept changing while being written; retrying",
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    @property
    def pending_products(self) -> int:
        return len(self._pending)

    def forget_tombstones(self) -> None:
        """Partitions revoked: another sink may delete these products meanwhile."""
        self._deleted_at.clear()

    # ------------------------------------------------------------------ one round

    def _ensure_ready(self) -> None:
        if not self._ready:
            ensure_indices(self.client, self.settings)
            self._ready = True

    def _flush_round(self) -> tuple[bool, list[str]]:
        """Write every pending product once: scripted where it has only upserts, read and
        planned where it has a delete.

        Returns (some products must be re-planned now, reasons products failed).
        """
        product_ids = list(self._pending)
        upserts_only = {p for p in product_ids if all(is_upsert(b.event) for b in self._pending[p])}
        scripted = [p for p in product_ids if p in upserts_only]
        planned = [p for p in product_ids if p not in upserts_only]
        self._learn_tombstones([p for p in scripted if p not in self._deleted_at])
        stored = self._read(planned)
        plans = [
            plan_product(pid, stored[pid], [b.event for b in self._pending[pid]]) for pid in planned
        ]
        actions: list[tuple[ProductPlan, str, list[dict[str, Any]]]] = []
        for plan in plans:
            self._remember(plan.product_id, stored[plan.product_id].deleted_at)
            if not plan.has_writes:
                self._settle(plan)
            actions.extend((plan, kind, body) for kind, body in self._bulk_actions(plan))
        for pid in scripted:
            plan, lines = self._scripted(pid)
            if lines is None:
                self._settle(plan)
            else:
                plans.append(plan)
                actions.append((plan, "update", lines))
        results = self._bulk(actions)
        return self._apply_results(plans, actions, results)

    def _scripted(self, pid: str) -> tuple[ProductPlan, list[dict[str, Any]] | None]:
        events = [b.event for b in self._pending[pid]]
        plan = ProductPlan(pid, ignored=[i for i, e in enumerate(events) if e is None])
        body = script_update(pid, events, self._deleted_at.get(pid))
        if body is None:
            return plan, None
        plan.applied = len(events) - len(plan.ignored)  # until the result says "noop"
        header = {"_index": self.index, "_id": pid, "retry_on_conflict": 3}
        return plan, [{"update": header}, body]

    def _learn_tombstones(self, product_ids: list[str]) -> None:
        """Read the tombstones of products the sink knows nothing about (one doc each)."""
        chunks = _chunks(product_ids, self.settings.elasticsearch_bulk_size)
        for part in self._pool.map(lambda ids: self._call(lambda: self._tombstones(ids)), chunks):
            for pid, deleted_at in part.items():
                self._remember(pid, deleted_at)

    def _tombstones(self, product_ids: list[str]) -> dict[str, int | None]:
        docs = [{"_index": self.tombstones, "_id": pid} for pid in product_ids]
        found = self.client.mget(docs=docs)["docs"]
        result: dict[str, int | None] = {}
        for pid, tomb in zip(product_ids, found, strict=True):
            if "error" in tomb:
                raise RecoverableError("elasticsearch", f"mget failed: {tomb['error']}")
            result[pid] = tomb["_source"]["deleted_at"] if tomb.get("found") else None
        return result

    def _remember(self, product_id: str, deleted_at: int | None) -> None:
        self._deleted_at.pop(product_id, None)  # re-inserted last: the newest
        self._deleted_at[product_id] = deleted_at
        while len(self._deleted_at) > MAX_KNOWN_TOMBSTONES:
            self._deleted_at.pop(next(iter(self._deleted_at)))

    def _read(self, product_ids: list[str]) -> dict[str, StoredProduct]:
        chunks = _chunks(product_ids, self.settings.elasticsearch_bulk_size)
        stored: dict[str, StoredProduct] = {}
        for part in self._pool.map(lambda ids: self._call(lambda: self._mget(ids)), chunks):
            stored.update(part)
        return stored

    def _mget(self, product_ids: list[str]) -> dict[str, StoredProduct]:
        docs = [{"_index": self.index, "_id": pid} for pid in product_ids]
        docs += [{"_index": self.tombstones, "_id": pid} for pid in product_ids]
        found = self.client.mget(docs=docs)["docs"]
        result: dict[str, StoredProduct] = {}
        count = len(product_ids)
        for pid, doc, tomb in zip(product_ids, found[:count], found[count:], strict=True):
            for item in (doc, tomb):
                if "error" in item:
                    raise RecoverableError("elasticsearch", f"mget failed: {item['error']}")
            result[pid] = StoredProduct(
                source=doc["_source"] if doc.get("found") else None,
                seq_no=doc.get("_seq_no"),
                primary_term=doc.get("_primary_term"),
                deleted_at=tomb["_source"]["deleted_at"] if tomb.get("found") else None,
            )
        return result

    def _bulk_actions(self, plan: ProductPlan) -> Iterable[tuple[str, list[dict[str, Any]]]]:
        pid = plan.product_id
        if plan.tombstone is not None:
            header = {
                "_index": self.tombstones,
                "_id": pid,
                "version": plan.tombstone,
                "version_type": "external_gte",
            }
            body = {"product_id": pid, "deleted_at": plan.tombstone}
            yield "tombstone", [{"index": header}, body]
        write = plan.write
        if write is None:
            return
        target: dict[str, Any] = {"_index": self.index, "_id": pid}
        if write.kind != "create":
            target |= {"if_seq_no": write.seq_no, "if_primary_term": write.primary_term}
        lines: list[dict[str, Any]] = [{write.kind: target}]
        if write.source is not None:
            lines.append(write.source)
        yield write.kind, lines

    def _bulk(
        self, actions: list[tuple[ProductPlan, str, list[dict[str, Any]]]]
    ) -> list[dict[str, Any]]:
        chunks = _chunks(actions, self.settings.elasticsearch_bulk_size)

        def send(chunk: list[tuple[ProductPlan, str, list[dict[str, Any]]]]) -> Any:
            operations = [line for _, _, lines in chunk for line in lines]
            return self._call(lambda: self.client.bulk(operations=operations)["items"])

        items: list[dict[str, Any]] = []
        for part in self._pool.map(send, chunks):
            items.extend(next(iter(item.values())) for item in part)
        return items

    def _apply_results(
        self,
        plans: list[ProductPlan],
        actions: list[tuple[ProductPlan, str, list[dict[str, Any]]]],
        results: list[dict[str, Any]],
    ) -> tuple[bool, list[str]]:
        outcome: dict[str, str] = {plan.product_id: "ok" for plan, _, _ in actions}
        failures: list[str] = []
        for (plan, kind, _), item in zip(actions, results, strict=True):
            verdict = self._verdict(plan, kind, item)
            if verdict == "failed":
                failures.append(f"{plan.product_id}: {_error_text(item)}")
            if verdict != "ok" and outcome[plan.product_id] != "failed":
                outcome[plan.product_id] = verdict
        retry_now = False
        for plan in plans:
            final = outcome.get(plan.product_id)
            if final == "ok":
                self._settle(plan)
            elif final in ("conflict", "invalid"):
                retry_now = True
        return retry_now, failures

    def _verdict(self, plan: ProductPlan, kind: str, item: dict[str, Any]) -> str:
        status = int(item.get("status", 500))
        if status < 300:
            if kind == "update" and item.get("result") == "noop":
                plan.stale, plan.applied = plan.applied, 0  # every event was stale
                return "ok"
            SINK_WRITES.labels(sink=SINK_NAME, op=kind).inc()
            if kind == "tombstone":
                self._remember(plan.product_id, plan.tombstone)
            return "ok"
        if status == 409:
            SINK_CONFLICTS.labels(sink=SINK_NAME, kind=kind).inc()
            if kind == "tombstone":
                # A newer tombstone already exists: ours is stale, which is fine; its
                # value is unknown here, so the next event reads it.
                self._deleted_at.pop(plan.product_id, None)
                return "ok"
            return "conflict"
        if status == 400 and kind in ("create", "index", "update"):
            self._reject_normalised(plan.product_id, _error_text(item))
            return "invalid"
        return "failed"

    def _settle(self, plan: ProductPlan) -> None:
        STALE_EVENTS.inc(plan.stale)
        if plan.ignored:
            SINK_WRITES.labels(sink=SINK_NAME, op="ignored").inc(len(plan.ignored))
        self._pending.pop(plan.product_id, None)

    def _reject_normalised(self, product_id: str, reason: str) -> None:
        """Refuse the product's normalised records (dead-lettered by the runner); keep the rest."""
        buffered = self._pending.get(product_id, [])
        rejected = [b for b in buffered if isinstance(b.event, NormalisedUpsert)] or buffered
        for item in rejected:
            self._refused.append(
                Refused(
                    item.message,
                    InvalidMessage(
                        f"Elasticsearch refused the document: {reason}; fix the field in "
                        "the normaliser or feed mapping, then replay it with "
                        "catstream deadletter replay",
                        error_class="MappingError",
                    ),
                )
            )
        kept = [b for b in buffered if b not in rejected]
        if kept:
            self._pending[product_id] = kept
        else:
            self._pending.pop(product_id, None)

    def _call(self, request: Callable[[], T]) -> T:
        """Run one paced request; transport and overload errors become recoverable."""
        self._pacer.wait()
        try:
            return request()
        except ApiError as exc:
            if exc.meta.status in _RECOVERABLE_STATUS or exc.meta.status >= 500:
                raise RecoverableError("elasticsearch", f"{exc.meta.status} {exc.message}") from exc
            raise RecoverableError(
                "elasticsearch",
                f"{exc.meta.status} {exc.message}; check CATSTREAM_ELASTICSEARCH_* settings "
                "(URL, credentials, index name)",
            ) from exc
        except TransportError as exc:
            raise RecoverableError(
                "elasticsearch",
                f"{type(exc).__name__} talking to {self.settings.elasticsearch_url}: {exc}",
            ) from exc


def build_elasticsearch_sink_runner(settings: Settings, **config: Any) -> SinkRunner:
    """The worker's Elasticsearch sink: normalised products and predictions, one static member."""
    runner_config = SinkRunnerConfig(
        topics=[
            settings.topic("normalised"),
            settings.topic("predictions"),
            settings.topic("matches"),
        ],
        group_id=f"{settings.app_id}-elasticsearch-sink",
        instance_id=settings.worker_instance_id,
        **config,
    )
    sink = ElasticsearchSink(settings)
    runner_config.on_revoke = sink.forget_tombstones
    return SinkRunner(sink, settings, runner_config)


def run_elasticsearch_sink(settings: Settings, stop_event: threading.Event) -> None:
    """Run the Elasticsearch sink until ``stop_event`` is set (for a worker thread)."""
    runner = build_elasticsearch_sink_runner(settings)

    def stop_when_asked() -> None:
        stop_event.wait()
        runner.stop()

    threading.Thread(target=stop_when_asked, name="es-sink-stop", daemon=True).start()
    runner.run()


def _chunks(items: list[T], size: int) -> list[list[T]]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _error_text(item: dict[str, Any]) -> str:
    error = item.get("error") or {}
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return str(error)
