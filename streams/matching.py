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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from catstream.logs import get_logger
from catstream.metrics import MATCH_CANDIDATES, MATCH_PAIRS
from catstream.settings import Settings
from schemas.events import OfferGroup, OfferMatch, now_ms
from streams.match_candidates import MatchBackends, Vectors, search_keys
from streams.offer_groups import GraphNode, assign_groups
from triton_models.matcher.features import MatchRecord
from triton_models.matcher.pair_model import PairModel
from triton_models.matcher.records import record_from_fields
from triton_models.matcher.variants import conflict_reason

log = get_logger(__name__, stage="match")
MAX_REGION = 500  # products regrouped at once; a bigger region is cut (logged)
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


class OfferMatcher:
    def __init__(self, settings: Settings, model: PairModel, backends: MatchBackends) -> None:
        self.settings = settings
        self.model = model
        self.backends = backends
        self.threshold = (
            settings.match_threshold if settings.match_threshold is not None else model.threshold
        )
        self.version = str(model.metadata.get("version", "0"))

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

    def match(self, item: MatchInput) -> list[OfferGroup]:
        record = item.record()
        candidates = self.candidates(item)
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
        own = self._document(item, record)
        return self._regroup(item.product_id, own, edges, conflicts, item.updated_at)

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

    def remove(self, product_id: str) -> list[OfferGroup]:
        """``product_id`` leaves its group; returns the groups that changed (not its own)."""
        return self._regroup(product_id, None, {}, set(), None)

    # ------------------------------------------------------------- grouping

    def _regroup(
        self,
        product_id: str,
        own: dict[str, Any] | None,
        edges: dict[str, float],
        conflicts: set[str],
        updated_at: int | None,
    ) -> list[OfferGroup]:
        stored = self.backends.documents([product_id])
        before = stored.get(product_id) or {}
        old_edges = set((before.get("edges") or {}).keys())
        old_conflicts = set(before.get("conflicts") or [])
        touched = old_edges | set(edges) | old_conflicts | conflicts
        docs = self.backends.documents(sorted(touched))
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
        region = self._region(docs, seeds={product_id, *touched} - skip, skip=skip)
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
                OfferGroup(
                    product_id=pid,
                    offer_group=group,
                    members=sorted(members[group]),
                    matches=[
                        OfferMatch(product_id=n, score=min(1.0, max(0.0, float(s))))
                        for n, s in sorted((document.get("edges") or {}).items())
                    ],
                    matcher_version=self.version,
                    updated_at=updated_at if pid == product_id else document.get("updated_at"),
                    matched_at=matched_at,
                )
            )
        upserts = {pid: region[pid] for pid in changed if pid in region}
        self.backends.write(upserts, [product_id] if own is None and before else [])
        return events

    def _region(
        self, docs: dict[str, dict[str, Any]], seeds: set[str], skip: set[str]
    ) -> dict[str, dict[str, Any]]:
        """Every offer document reachable over edges from ``seeds`` (``docs`` preferred)."""
        region: dict[str, dict[str, Any]] = {}
        frontier = set(seeds)
        while frontier and len(region) < MAX_REGION:
            missing = [p for p in frontier if p not in docs]
            docs.update(self.backends.documents(missing))
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
        return region
