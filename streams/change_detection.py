"""Deciding, per product, whether an event is stale, unchanged or changed.

The state per product is the last ``updated_at`` and fingerprint seen; it
lives in a changelog-backed Faust table, so a restarted worker remembers it.
Pure functions here; the agent owns the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Verdict(Enum):
    STALE = "stale"  # older than what we already have: drop it
    UNCHANGED = "unchanged"  # categorisation fields identical: skip inference
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class ProductState:
    """What the table remembers about a product."""

    updated_at: int | None
    fingerprint: str | None  # None after a delete

    def as_dict(self) -> dict[str, Any]:
        return {"updated_at": self.updated_at, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ProductState | None:
        if not data:
            return None
        return cls(updated_at=data.get("updated_at"), fingerprint=data.get("fingerprint"))


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


def judge(previous: ProductState | None, updated_at: int | None, fingerprint: str) -> Verdict:
    if is_stale(previous, updated_at):
        return Verdict.STALE
    if previous is not None and previous.fingerprint == fingerprint:
        return Verdict.UNCHANGED
    return Verdict.CHANGED


def next_state(
    previous: ProductState | None, updated_at: int | None, fingerprint: str | None
) -> ProductState:
    """State after accepting an event; keeps the newest timestamp we know of."""
    newest = updated_at
    if previous is not None and previous.updated_at is not None:
        newest = previous.updated_at if updated_at is None else max(updated_at, previous.updated_at)
    return ProductState(updated_at=newest, fingerprint=fingerprint)
