"""Who is working on which review item: leases that survive an API restart.

A labeller who opens an item holds a lease on it for ``ttl_s`` (settings:
``review_lease_minutes``); nobody else is handed that item meanwhile. Answering or
skipping releases it; a lease nobody answers simply expires and the item is handed
out again. A skip also hides the item from that labeller for one lease period.

State lives in SQLite (``<home>/review-leases.sqlite`` by default), not in memory:
a restarted API keeps every lease, and several API processes on one host share
them. Taking a lease is one ``BEGIN IMMEDIATE`` transaction, so two labellers can
never both get the same item. (Several API replicas on different hosts would need
a shared store; the review app runs as one replica.)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
create table if not exists leases (
    product_id text primary key,
    labeller text not null,
    expires_at real not null
);
create table if not exists skips (
    labeller text not null,
    product_id text not null,
    until real not null,
    primary key (labeller, product_id)
);
"""


@dataclass(frozen=True)
class Lease:
    product_id: str
    labeller: str
    expires_at: float


class LeaseStore:
    def __init__(self, path: Path, ttl_s: float) -> None:
        self.path = Path(path)
        self.ttl_s = ttl_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("pragma journal_mode=wal")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def active(self, now: float) -> dict[str, Lease]:
        with self._lock:
            rows = self._db.execute(
                "select product_id, labeller, expires_at from leases where expires_at > ?", (now,)
            ).fetchall()
        return {r[0]: Lease(r[0], r[1], r[2]) for r in rows}

    def held_by(self, labeller: str, now: float) -> Lease | None:
        with self._lock:
            row = self._db.execute(
                "select product_id, labeller, expires_at from leases "
                "where labeller = ? and expires_at > ? order by expires_at limit 1",
                (labeller, now),
            ).fetchone()
        return Lease(*row) if row else None

    def take_first(self, labeller: str, candidates: Iterable[str], now: float) -> Lease | None:
        """Lease the first of ``candidates`` (in order) nobody else holds and this labeller
        did not skip lately; None when there is none. The labeller's own live lease wins."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                lease = self._take_first(labeller, candidates, now)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
        return lease

    def _take_first(self, labeller: str, candidates: Iterable[str], now: float) -> Lease | None:
        db = self._db
        held = dict(
            db.execute(
                "select product_id, labeller from leases where expires_at > ?", (now,)
            ).fetchall()
        )
        skipped = {
            row[0]
            for row in db.execute(
                "select product_id from skips where labeller = ? and until > ?", (labeller, now)
            )
        }
        wanted = list(candidates)
        own = [p for p in wanted if held.get(p) == labeller]
        if own:
            return Lease(own[0], labeller, self._expiry(own[0]))
        for product_id in wanted:
            if product_id in held or product_id in skipped:
                continue
            expires = now + self.ttl_s
            db.execute(
                "insert into leases (product_id, labeller, expires_at) values (?, ?, ?) "
                "on conflict(product_id) do update set labeller = excluded.labeller, "
                "expires_at = excluded.expires_at",
                (product_id, labeller, expires),
            )
            return Lease(product_id, labeller, expires)
        return None

    def _expiry(self, product_id: str) -> float:
        row = self._db.execute(
            "select expires_at from leases where product_id = ?", (product_id,)
        ).fetchone()
        return float(row[0]) if row else 0.0

    def holder(self, product_id: str, now: float) -> str | None:
        with self._lock:
            row = self._db.execute(
                "select labeller from leases where product_id = ? and expires_at > ?",
                (product_id, now),
            ).fetchone()
        return str(row[0]) if row else None

    def release(self, product_id: str, labeller: str) -> None:
        with self._lock:
            self._db.execute(
                "delete from leases where product_id = ? and labeller = ?", (product_id, labeller)
            )

    def skip(self, product_id: str, labeller: str, now: float) -> None:
        with self._lock:
            self._db.execute("begin immediate")
            self._db.execute(
                "delete from leases where product_id = ? and labeller = ?", (product_id, labeller)
            )
            self._db.execute(
                "insert or replace into skips (labeller, product_id, until) values (?, ?, ?)",
                (labeller, product_id, now + self.ttl_s),
            )
            self._db.execute("delete from skips where until <= ?", (now,))
            self._db.execute("commit")
