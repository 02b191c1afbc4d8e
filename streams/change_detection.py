"""Deciding, per product, whether an event is stale, identical, unchanged or changed.

The state per product is the newest ``updated_at`` seen, the categorisation
fingerprint and the whole-record digest of the last record published, and where
in ``products.raw`` that record came from; it lives in a changelog-backed Faust
table, so a restarted worker remembers it. Pure functions here; the agent owns
the table.

**Why an identical record may be dropped (ordering and staleness).** IDENTICAL
means the normalised record equals, in every field that reaches a topic or a
store (``normaliser.fingerprint.record_digest``; only ``updated_at`` and the
per-event ``changed`` flag are left out), the last record this agent
*published* for the product. Publishing it again could change nothing
downstream but the stores' version stamps:

* The sinks order a product's events by ``updated_at`` (Elasticsearch: the
  normalised version and ``(updated_at, predicted_at)`` for predictions; Milvus:
  ``updated_at``) and drop older ones. Skipping an identical record at ``T2``
  leaves them at the content of the last published record, version ``T1 <= T2``.
* The table still advances the product's newest ``updated_at`` to ``T2``, so a
  later event older than ``T2`` is dropped as STALE here, before any sink sees it;
  the stores never see an event the skipped one would have superseded. A later
  event at or after ``T2`` is newer than ``T1``, so the stores accept it as they
  would have. The stores therefore end with the same content as if the record
  had been published; only their ``updated_at`` is the time of the last *change*
  (the last record that differed), not of the last delivery.
* A record is IDENTICAL only when it comes from *after* the published one in the
  same ``products.raw`` partition (``ProductState.source``). A partition is read
  in order, so an event at or before it is a re-delivery: the worker stopped
  after writing the state but before the output was confirmed and the offset
  committed. That event is published again, never skipped, so a crash cannot
  lose the output. A topic re-created from offset 0, a consumer group reset to
  the start, or a product moved to another partition publishes everything
  again too (the safe direction).
* State rows written before the digest existed have none: never identical.
  Deletes are judged as before, and a delete drops the state, so a re-created
  product is CHANGED.

What it does not heal: a product whose published record was dead-lettered
further down (the infer agent, a sink) is not re-sent by an identical re-feed.
Replay the dead letters, or set ``CATSTREAM_REFRESH_IDENTICAL=true`` for the
re-feed (identical records then flow as UNCHANGED, as before), e.g. to rebuild a
deleted index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from catstream.errors import InvalidMessage


class Verdict(Enum):
    STALE = "stale"  # older than what we already have: drop it
    IDENTICAL = "identical"  # the whole record as last published: publish nothing
    UNCHANGED = "unchanged"  # categorisation fields identical: skip inference
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class ProductState:
    """What the table remembers about a product."""

    updated_at: int | None  # the newest seen, published or not
    fingerprint: str | None  # None after a delete
    # ``record_digest`` of the last record published; None in rows written before it.
    digest: str | None = None
    # (partition, offset) in products.raw of the event that published that record.
    source: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"updated_at": self.updated_at, "fingerprint": self.fingerprint}
        if self.digest is not None and self.source is not None:
            data["digest"] = self.digest
            data["source"] = list(self.source)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ProductState | None:
        if not data:
            return None
        source = data.get("source")
        return cls(
            updated_at=data.get("updated_at"),
            fingerprint=data.get("fingerprint"),
            digest=data.get("digest"),
            source=(int(source[0]), int(source[1])) if source else None,
        )

    def same_record(self, other: ProductState | None) -> bool:
        """Same timestamp, fingerprint and digest: writing ``other`` over it changes nothing
        that matters (only the source would move; see ``next_state``)."""
        return other is not None and (self.updated_at, self.fingerprint, self.digest) == (
            other.updated_at,
            other.fingerprint,
            other.digest,
        )


def is_stale(previous: ProductState | None, updated_at: int | None) -> bool:
    """An event older than the newest one seen for the product is stale.

    Equal timestamps are not stale: re-publishing a feed must still flow through
    (as unchanged) so the catalogue is refreshed. An event without a timestamp
    cannot be ordered: it is accepted while we know no timestamp for the product,
    and treated as stale once we do (otherwise re-publishing a feed where an
    untimed row precedes a timed update would flip the product back and forth).
    """
    if previous is None or previous.updated_at is None:
        return False
    if updated_at is None:
        return True
    return updated_at < previous.updated_at


def is_identical(
    previous: ProductState | None, digest: str | None, source: tuple[int, int] | None
) -> bool:
    """The record is the one last published, and comes from after it in its partition."""
    if previous is None or previous.digest is None or previous.source is None:
        return False
    if digest is None or source is None or digest != previous.digest:
        return False
    partition, offset = source
    published_partition, published_offset = previous.source
    return partition == published_partition and offset > published_offset


def judge(
    previous: ProductState | None,
    updated_at: int | None,
    fingerprint: str,
    digest: str | None = None,
    source: tuple[int, int] | None = None,
) -> Verdict:
    """The event's verdict; IDENTICAL only when ``digest`` and ``source`` are given."""
    if is_stale(previous, updated_at):
        return Verdict.STALE
    if is_identical(previous, digest, source):
        return Verdict.IDENTICAL
    if previous is not None and previous.fingerprint == fingerprint:
        return Verdict.UNCHANGED
    return Verdict.CHANGED


def _newest(previous: ProductState | None, updated_at: int | None) -> int | None:
    if previous is None or previous.updated_at is None:
        return updated_at
    return previous.updated_at if updated_at is None else max(updated_at, previous.updated_at)


def next_state(
    previous: ProductState | None,
    updated_at: int | None,
    fingerprint: str | None,
    digest: str | None = None,
    source: tuple[int, int] | None = None,
) -> ProductState:
    """State after publishing an event; keeps the newest timestamp we know of.

    When only the source would change (the same record published again: a
    re-delivery, or ``refresh_identical``), the previous state is kept: its
    source is an earlier event that published the same record, which keeps the
    replay rule of ``is_identical`` safe and spares a changelog write.
    """
    state = ProductState(_newest(previous, updated_at), fingerprint, digest, source)
    if previous is not None and previous.same_record(state):
        return previous
    return state


def advance(previous: ProductState, updated_at: int | None) -> ProductState:
    """State after an IDENTICAL event: only the newest ``updated_at`` moves."""
    return replace(previous, updated_at=_newest(previous, updated_at))


def check_not_in_future(updated_at: int | None, now_ms: int, max_skew_ms: int) -> None:
    """Refuse an ``updated_at`` more than ``max_skew_ms`` ahead of ``now_ms``.

    Such a timestamp would become the product's newest one and make every later,
    real update look stale, freezing the product.
    """
    if updated_at is not None and updated_at < 0:
        raise InvalidMessage(
            f"updated_at {updated_at} is before 1970; send the time the product last changed, "
            "in UTC (RFC 3339 or epoch milliseconds)",
            error_class="UpdatedAtInvalid",
        )
    if updated_at is not None and updated_at > now_ms + max_skew_ms:
        raise InvalidMessage(
            f"updated_at {updated_at} (epoch ms) is {(updated_at - now_ms) / 86_400_000:,.1f} "
            f"days in the future (at most {max_skew_ms / 3_600_000:g} h ahead is accepted); "
            "send the time the product last changed, in UTC (RFC 3339 or epoch milliseconds, "
            "not seconds or microseconds), or raise CATSTREAM_UPDATED_AT_MAX_SKEW_S",
            error_class="UpdatedAtInFuture",
        )
