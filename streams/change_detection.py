"""Deciding, per product, whether an event is stale, unchanged or changed.

The state per product is the last ``updated_at`` and fingerprint seen; it
lives in a changelog-backed Faust table, so a restarted worker remembers it.
Pure functions here; the agent owns the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from catstream.errors import InvalidMessage


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
