"""Deciding what to write for one product: fold its buffered events onto what is stored.

Why not ES external versioning alone: it applies to whole-document index
operations, but two topics own different parts of one document, and an external
version cannot order both. Instead each field group carries its own version in
``versions`` and the sink does read → decide (here, pure) → conditional write:

* an event is applied only when it is strictly newer than the stored version of
  its group and than the product's delete tombstone (equal = replay, skipped);
* a delete applies when it is not older than the stored normalised version, and
  always raises the tombstone, so a late, older upsert cannot resurrect it;
* the write is conditional on the ``_seq_no``/``_primary_term`` that was read
  (``create`` when nothing was stored), so a concurrent writer causes a 409 and
  the product is re-read and re-planned instead of being overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from workers.elasticsearch_documents import (
    OFFER_GROUP,
    PREDICTION_GROUP,
    NormalisedUpsert,
    OfferUpdate,
    PredictionUpdate,
    ProductDelete,
    SinkEvent,
)


@dataclass(frozen=True, slots=True)
class StoredProduct:
    """What Elasticsearch holds for a product: its document (if any) and tombstone."""

    source: dict[str, Any] | None = None
    seq_no: int | None = None
    primary_term: int | None = None
    deleted_at: int | None = None


@dataclass(frozen=True, slots=True)
class DocWrite:
    kind: Literal["create", "index", "delete"]
    source: dict[str, Any] | None = None
    seq_no: int | None = None
    primary_term: int | None = None


@dataclass
class ProductPlan:
    product_id: str
    write: DocWrite | None = None
    tombstone: int | None = None
    stale: int = 0
    applied: int = 0
    ignored: list[int] = field(default_factory=list)

    @property
    def has_writes(self) -> bool:
        return self.write is not None or self.tombstone is not None


@dataclass
class _State:
    normalised: dict[str, Any] | None
    normalised_version: int | None
    prediction: dict[str, Any] | None
    prediction_version: tuple[int, int] | None
    deleted_at: int | None
    changed: bool = False
    offer: dict[str, Any] | None = None
    offer_version: tuple[int, int] | None = None


def plan_product(
    product_id: str, stored: StoredProduct, events: list[SinkEvent | None]
) -> ProductPlan:
    """The writes that bring ``stored`` up to date with ``events`` (in arrival order)."""
    state = _initial_state(stored)
    plan = ProductPlan(product_id)
    for index, event in enumerate(events):
        if event is None:
            plan.ignored.append(index)
            continue
        if _apply(state, event):
            plan.applied += 1
        else:
            plan.stale += 1
    if state.deleted_at is not None and state.deleted_at != stored.deleted_at:
        plan.tombstone = state.deleted_at
    if state.changed:
        plan.write = _doc_write(product_id, stored, state)
    return plan


def _initial_state(stored: StoredProduct) -> _State:
    source = stored.source
    if source is None:
        return _State(None, None, None, None, stored.deleted_at)
    versions = source.get("versions") or {}
    other_groups = {*PREDICTION_GROUP, *OFFER_GROUP, "versions"}
    normalised = {k: v for k, v in source.items() if k not in other_groups}
    prediction = {k: source[k] for k in PREDICTION_GROUP if k in source}
    has_prediction = versions.get("prediction") is not None
    has_offer = versions.get("offer") is not None
    return _State(
        normalised=normalised if versions.get("normalised") is not None else None,
        normalised_version=versions.get("normalised"),
        prediction=prediction if has_prediction else None,
        prediction_version=(versions["prediction"], versions.get("prediction_at") or 0)
        if has_prediction
        else None,
        deleted_at=stored.deleted_at,
        offer={k: source[k] for k in OFFER_GROUP if k in source} if has_offer else None,
        offer_version=(versions["offer"], versions.get("offer_at") or 0) if has_offer else None,
    )


def _apply(state: _State, event: SinkEvent) -> bool:
    """Apply one event to ``state``; False when it is stale (older or a replay)."""
    if isinstance(event, NormalisedUpsert):
        if _not_newer(event.version, state.normalised_version, state.deleted_at):
            return False
        state.normalised, state.normalised_version = event.fields, event.version
    elif isinstance(event, PredictionUpdate):
        if state.prediction_version is not None and event.version <= state.prediction_version:
            return False
        if state.deleted_at is not None and event.version[0] <= state.deleted_at:
            return False
        state.prediction, state.prediction_version = event.fields, event.version
    elif isinstance(event, OfferUpdate):
        if state.offer_version is not None and event.version <= state.offer_version:
            return False
        if state.deleted_at is not None and event.version[0] <= state.deleted_at:
            return False
        state.offer, state.offer_version = event.fields, event.version
    elif isinstance(event, ProductDelete):
        version = event.version if event.version is not None else _newest(state)
        if state.normalised_version is not None and version < state.normalised_version:
            return False
        state.normalised = state.prediction = state.offer = None
        state.normalised_version = state.prediction_version = state.offer_version = None
        state.deleted_at = max(version, state.deleted_at or 0)
    state.changed = True
    return True


def _not_newer(version: int, current: int | None, deleted_at: int | None) -> bool:
    return (current is not None and version <= current) or (
        deleted_at is not None and version <= deleted_at
    )


def _newest(state: _State) -> int:
    """The version an unversioned delete takes: everything stored so far."""
    candidates = [state.normalised_version, state.deleted_at]
    if state.prediction_version is not None:
        candidates.append(state.prediction_version[0])
    return max((c for c in candidates if c is not None), default=0)


def _doc_write(product_id: str, stored: StoredProduct, state: _State) -> DocWrite | None:
    exists = stored.source is not None
    if state.normalised is None and state.prediction is None and state.offer is None:
        if not exists:
            return None
        return DocWrite("delete", seq_no=stored.seq_no, primary_term=stored.primary_term)
    source: dict[str, Any] = {"product_id": product_id}
    source.update(state.normalised or {})
    source.update(state.prediction or {})
    source.update(state.offer or {})
    source["versions"] = {
        "normalised": state.normalised_version,
        "prediction": state.prediction_version[0] if state.prediction_version else None,
        "prediction_at": state.prediction_version[1] if state.prediction_version else None,
    }
    if state.offer_version is not None:
        source["versions"]["offer"] = state.offer_version[0]
        source["versions"]["offer_at"] = state.offer_version[1]
    if not exists:
        return DocWrite("create", source=source)
    return DocWrite("index", source, seq_no=stored.seq_no, primary_term=stored.primary_term)
