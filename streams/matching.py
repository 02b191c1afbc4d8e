"""Matching one product: candidates → pair scores → offer groups → offer documents + events.

``OfferMatcher`` is the blocking core the matching agent runs in a thread for
each new or changed product (``match``) and each deleted one (``remove``):

1. candidates from Milvus and the offer index (``streams.match_candidates``);
2. the pair model scores (product, candidate); a pair at or above the threshold
   is an *edge*, unless ``conflict_reason`` calls the two variants, then it is a
   *conflict* (they may never share a group);
3. the product's edges and conflicts replace its old ones, on both ends;
4. the region (every product reachable over edges from the product and its old
   neighbours) is regrouped by ``streams.offer_groups.assign_groups``;
5. offer documents are written (visible to the next search on return), and the
   ``OfferGroup`` of every product whose group or edges changed is returned for
   the agent to publish on ``products.matches``.

Several workers match at once, so steps 3-5 are an optimistic transaction
over the offer index: every document read carries its version, every write is
conditional on it, and the documents read but not written are checked again
after the write. When another worker got there first (``WriteConflict``) the
whole regrouping is recomputed from what is stored now, after a short random
back-off. Two products of one group that arrive at once cannot see each other
in their first candidate search (neither is in the offer index yet), so after
its write a product searches again, and is matched again when a candidate
appeared. ``refreshed`` tells the agent which published groups another worker
has changed since, so the last event on ``products.matches`` for a product is
its stored group whatever order the workers' events arrive in.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from catstream.errors import RecoverableError
from catstream.logs import get_logger
from catstream.metrics import MATCH_CANDIDATES, MATCH_PAIRS, MATCH_RETRIES
from catstream.settings import Settings
from schemas.events import OfferGroup, OfferMatch, now_ms
from streams.match_candidates import MatchBackends, Vectors, Version, WriteConflict, search_keys
from streams.offer_groups import GraphNode, assign_groups
from triton_models.matcher.features import MatchRecord
from triton_models.matcher.pair_model import PairScorer
from triton_models.matcher.records import record_from_fields
from triton_models.matcher.variants import conflict_reason

log = get_logger(__name__, stage="match")
MAX_REGION = 500  # products regrouped at once; a bigger region is cut (logged)
MAX_ROUNDS = 40  # conflicting writes and re-matches for one product before backing off
UNPUBLISHED: Version = (-1, -1)  # written by an attempt that lost a race: re-read to publish
RECORD_FIELDS = (
    "title",
    "brand",
    "merchant",
    "price",
    "currency",
    "raw_category",
    "size",
    "colour",
    "extra",
)


@dataclass(frozen=True)
class MatchInput:
    """What the agent knows about a product when it matches it."""

    product_id: str
    fields: dict[str, Any]
    vectors: Vectors
    cat_l1: int | None
    updated_at: int | None
    fingerprint: str

    def record(self) -> MatchRecord:
        return record_from_fields(
            self.fields,
            product_id=self.product_id,
            text_vector=self.vectors.text,
            image_vector=self.vectors.image,
        )


@dataclass
class Regrouped:
    """What one match or remove changed: the events to publish, and the version of
    each written offer document they describe (``refreshed`` compares them later)."""

    events: list[OfferGroup] = field(default_factory=list)
    versions: dict[str, Version] = field(default_factory=dict)

    def then(self, later: Regrouped) -> Regrouped:
        """This, then ``later``: a product's later event replaces its earlier one."""
        events = {event.product_id: event for event in self.events}
        events.update({event.product_id: event for event in later.events})
        return Regrouped(list(events.values()), {**self.versions, **later.versions})


class OfferMatcher:
    def __init__(self, settings: Settings, model: PairScorer, backends: MatchBackends) -> None:
        self.settings = settings
        self.model = model
        self.backends = backends

    @property
    def threshold(self) -> float:
        if self.settings.match_threshold is not None:
            return self.settings.match_threshold
        return float(self.model.threshold)

    @property
    def version(self) -> str:
        return str(self.model.metadata.get("version", "0"))

    # --------------------------------------------------------------- upsert

    def candidates(self, item: MatchInput) -> dict[str, MatchRecord]:
        k = self.settings.match_candidates_k
        record = item.record()
        vectors = self.backends.nearest(item.product_id, item.vectors, item.cat_l1, k)
        lexical = [c for c in self.backends.lexical(record, item.cat_l1, k) if c not in vectors]
        vectors.update(self.backends.vectors_of(lexical))
        ids = sorted((set(vectors) | set(lexical)) - {item.product_id})
        documents = self.backends.documents(ids)
        found: dict[str, MatchRecord] = {}
        for product_id, document in documents.items():
            vector = vectors.get(product_id, Vectors(None, None))
            found[product_id] = record_from_fields(
                document.get("record") or {},
                product_id=product_id,
                text_vector=vector.text,
                image_vector=vector.image,
            )
        MATCH_CANDIDATES.observe(len(found))
        return found

    def match(self, item: MatchInput) -> Regrouped:
        record = item.record()
        done = Regrouped()
        scored: set[str] | None = None  # candidates of the last committed regrouping
        for round_ in range(MAX_ROUNDS):
            if scored is not None:
                if not self._new_candidates(item, scored):
                    return done
                MATCH_RETRIES.labels(reason="new_candidate").inc()
            candidates = self.candidates(item)
            edges, conflicts = self._score(record, candidates)
            own = self._document(item, record)
            try:
                done = done.then(
                    self._regroup(item.product_id, own, edges, conflicts, item.updated_at)
                )
            except WriteConflict as exc:
                done = done.then(self._lost_race(exc, round_))
                scored = None
                continue
            scored = set(candidates)
        raise self._too_contended(item.product_id)

    def _score(
        self, record: MatchRecord, candidates: dict[str, MatchRecord]
    ) -> tuple[dict[str, float], set[str]]:
        pairs = [(record, c) for c in candidates.values()]
        scores = self.model.score_pairs(pairs).tolist() if pairs else []
        edges: dict[str, float] = {}
        conflicts: set[str] = set()
        for (_, candidate), score in zip(pairs, scores, strict=True):
            if score < self.threshold:
                MATCH_PAIRS.labels(verdict="rejected").inc()
                continue
            reason = conflict_reason(record, candidate)
            if reason is None:
                edges[candidate.product_id] = round(float(score), 4)
                MATCH_PAIRS.labels(verdict="accepted").inc()
            else:
                conflicts.add(candidate.product_id)
                MATCH_PAIRS.labels(verdict="conflict").inc()
        return edges, conflicts

    def _new_candidates(self, item: MatchInput, scored: set[str]) -> bool:
        """Whether a candidate search now finds an offer document the last one did not
        (a product of the same group, matched at the same time by another worker)."""
        k = self.settings.match_candidates_k
        ids = set(
            self.backends.nearest(item.product_id, item.vectors, item.cat_l1, k, with_vectors=False)
        )
        ids.update(self.backends.lexical(item.record(), item.cat_l1, k))
        new = sorted(ids - scored - {item.product_id})
        return bool(new and self.backends.versions(new))

    def _lost_race(self, exc: WriteConflict, round_: int) -> Regrouped:
        """Back off after a conflict; what the lost attempt did write is published from
        what is stored once the product is done (``UNPUBLISHED``)."""
        MATCH_RETRIES.labels(reason="write_conflict").inc()
        log.info("match_write_conflict", products=exc.product_ids[:5], round=round_)
        time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2**round_)))
        return Regrouped([], dict.fromkeys(exc.written, UNPUBLISHED))

    def _too_contended(self, product_id: str) -> RecoverableError:
        return RecoverableError(
            "elasticsearch",
            f"product {product_id!r}: its offer group changed under it {MAX_ROUNDS} times in a "
            "row (other workers are regrouping it); retrying",
        )

    def _document(self, item: MatchInput, record: MatchRecord) -> dict[str, Any]:
        fields = {k: item.fields.get(k) for k in RECORD_FIELDS if item.fields.get(k) is not None}
        price = record.price
        return {
            "product_id": item.product_id,
            "merchant": record.merchant,
            "title": record.title,
            **search_keys(record),
            "cat_l1": item.cat_l1,
            "price": price if price is not None and math.isfinite(price) else None,
            "currency": record.currency,
            "url": item.fields.get("url"),
            "image_url": (item.fields.get("image_urls") or [None])[0],
            "size": record.size,
            "colour": record.colour,
            "record": fields,
            "updated_at": item.updated_at,
            "fingerprint": item.fingerprint,
        }

    # --------------------------------------------------------------- delete

    def remove(self, product_id: str) -> Regrouped:
        """``product_id`` leaves its group; returns the groups that changed (not its own)."""
        done = Regrouped()
        for round_ in range(MAX_ROUNDS):
            try:
                return done.then(self._regroup(product_id, None, {}, set(), None))
            except WriteConflict as exc:
                done = done.then(self._lost_race(exc, round_))
        raise self._too_contended(product_id)

    def refreshed(
        self, published: dict[str, Version]
    ) -> tuple[list[OfferGroup], list[str], dict[str, Version]]:
        """After publishing: (events, tombstones, their versions) for the products whose
        offer document changed since the version their published event describes, read
        from what is stored now. Another worker that wrote later may have published
        earlier; publishing these until nothing changed leaves each product's stored
        group as its last event."""
        if not published:
            return [], [], {}
        docs, versions = self.backends.read(sorted(published))
        gone = sorted(pid for pid in published if pid not in docs)
        events: list[OfferGroup] = []
        stale: dict[str, Version] = {}
        for pid in sorted(docs):
            if versions[pid] == published[pid]:
                continue
            document = docs[pid]
            group = str(document.get("offer_group") or pid)
            members = set(self.backends.group_members(group, MAX_REGION)) | {pid}
            events.append(
                self._event(
                    pid,
                    document,
                    group,
                    members,
                    document.get("updated_at"),
                    int(document.get("matched_at") or now_ms()),
                )
            )
            stale[pid] = versions[pid]
        return events, gone, stale

    def _event(
        self,
        pid: str,
        document: dict[str, Any],
        group: str,
        members: set[str],
        updated_at: int | None,
        matched_at: int,
    ) -> OfferGroup:
        return OfferGroup(
            product_id=pid,
            offer_group=group,
            members=sorted(members),
            matches=[
                OfferMatch(product_id=n, score=min(1.0, max(0.0, float(s))))
                for n, s in sorted((document.get("edges") or {}).items())
            ],
            matcher_version=self.version,
            updated_at=updated_at,
            matched_at=matched_at,
        )

    # ------------------------------------------------------------- grouping

    def _regroup(
        self,
        product_id: str,
        own: dict[str, Any] | None,
        edges: dict[str, float],
        conflicts: set[str],
        updated_at: int | None,
    ) -> Regrouped:
        stored, versions = self.backends.read([product_id])
        before = stored.get(product_id) or {}
        old_edges = set((before.get("edges") or {}).keys())
        old_conflicts = set(before.get("conflicts") or [])
        touched = old_edges | set(edges) | old_conflicts | conflicts
        docs, more = self.backends.read(sorted(touched))
        versions.update(more)
        changed: set[str] = set()
        for other, document in docs.items():
            other_edges = dict(document.get("edges") or {})
            other_conflicts = set(document.get("conflicts") or [])
            new_edges, new_conflicts = dict(other_edges), set(other_conflicts)
            new_edges.pop(product_id, None)
            new_conflicts.discard(product_id)
            if own is not None and other in edges:
                new_edges[product_id] = edges[other]
            if own is not None and other in conflicts:
                new_conflicts.add(product_id)
            if new_edges != other_edges or new_conflicts != other_conflicts:
                document["edges"] = new_edges
                document["conflicts"] = sorted(new_conflicts)
                document["neighbours"] = sorted(new_edges)
                changed.add(other)
        if own is not None:
            own["edges"] = {k: v for k, v in edges.items() if k in docs}
            own["conflicts"] = sorted(c for c in conflicts if c in docs)
            own["neighbours"] = sorted(own["edges"])
            own["offer_group"] = before.get("offer_group")
            docs[product_id] = own
            changed.add(product_id)
        skip = {product_id} if own is None else set()
        region, absent = self._region(
            docs, versions, seeds={product_id, *touched} - skip, skip=skip
        )
        changed |= _drop_dangling(region, absent | skip)  # skip: the product removed
        nodes = {
            pid: GraphNode(
                pid,
                edges=dict(doc.get("edges") or {}),
                conflicts=set(doc.get("conflicts") or []),
                offer_group=doc.get("offer_group"),
            )
            for pid, doc in region.items()
        }
        groups = assign_groups(nodes)
        members: dict[str, set[str]] = {}
        for pid, group in groups.items():
            members.setdefault(group, set()).add(pid)
        old_members: dict[str, set[str]] = {}
        for pid, doc in region.items():
            old_members.setdefault(str(doc.get("offer_group")), set()).add(pid)
        events: list[OfferGroup] = []
        matched_at = now_ms()
        for pid in sorted(region):
            document = region[pid]
            group = groups[pid]
            was = document.get("offer_group")
            if was != group or old_members.get(str(was)) != members[group]:
                changed.add(pid)
            document["offer_group"] = group
            if pid not in changed:
                continue
            document["matched_at"] = matched_at
            events.append(
                self._event(
                    pid,
                    document,
                    group,
                    members[group],
                    updated_at if pid == product_id else document.get("updated_at"),
                    matched_at,
                )
            )
        upserts = {pid: region[pid] for pid in changed if pid in region}
        deletes = [product_id] if own is None and before else []
        written = self.backends.write(upserts, deletes, versions)
        # What this regrouping read but did not write must still be as it was read
        # (another worker may have regrouped it: then these groups are stale).
        unchanged = sorted(set(versions) - set(upserts) - set(deletes))
        now = self.backends.versions(unchanged) if unchanged else {}
        moved = [pid for pid in unchanged if now.get(pid) != versions[pid]]
        if moved:
            raise WriteConflict(moved, written=sorted(written))
        return Regrouped(events, written)

    def _region(
        self,
        docs: dict[str, dict[str, Any]],
        versions: dict[str, Version],
        seeds: set[str],
        skip: set[str],
    ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Every offer document reachable over edges from ``seeds`` (``docs`` preferred),
        and the ids an edge led to that have no offer document."""
        region: dict[str, dict[str, Any]] = {}
        absent: set[str] = set()
        frontier = set(seeds)
        while frontier and len(region) < MAX_REGION:
            missing = [p for p in frontier if p not in docs]
            found, found_versions = self.backends.read(missing)
            docs.update(found)
            versions.update(found_versions)
            absent.update(p for p in missing if p not in found)
            next_frontier: set[str] = set()
            for pid in frontier:
                document = docs.get(pid)
                if document is None or pid in region or pid in skip:
                    continue
                region[pid] = document
                next_frontier.update(k for k in (document.get("edges") or {}) if k not in region)
            frontier = next_frontier
        if frontier:
            log.warning("match_region_cut", size=len(region), left=len(frontier))
        return region, absent


def _drop_dangling(region: dict[str, dict[str, Any]], absent: set[str]) -> set[str]:
    """Drop the edges to offers that are gone; returns the documents it changed.

    A removal deletes its document only once its neighbours no longer point at it,
    so this repairs what older versions (whose delete could win a race its
    neighbours' writes lost) or a hand-edited index left behind."""
    changed: set[str] = set()
    for pid, document in region.items():
        edges = dict(document.get("edges") or {})
        dangling = sorted(set(edges) & absent)
        if not dangling:
            continue
        for gone in dangling:
            del edges[gone]
        document["edges"] = edges
        document["neighbours"] = sorted(edges)
        changed.add(pid)
        log.warning("match_dangling_edges_dropped", product_id=pid, gone=dangling[:5])
    return changed
