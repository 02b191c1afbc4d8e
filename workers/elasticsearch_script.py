"""One scripted update per product and flush: the fold of ``elasticsearch_plan``, run by
Elasticsearch on the stored document, so the sink writes without reading it first.

Before, each flush read every buffered product (its document and its tombstone:
two documents in an ``mget``) and then re-indexed the whole document, so a product
that arrived as a normalised event and then a prediction cost four documents read
and two whole documents written. Now an upsert event is one ``update`` action
(``scripted_upsert``) whose painless script applies the buffered events in order,
with the same rules as ``plan_product`` (each field group's version, the product's
tombstone), and sends only what the events carry. The tombstone's ``deleted_at``
is a parameter: the sink reads it once per product and process (``ElasticsearchSink``
keeps what it learnt until its partitions are revoked).

Deletes stay on the read → plan → conditional write path: the tombstone must be
raised only when the delete applies, which depends on the stored version, and
Elasticsearch cannot write a second index from a script.

The script works on ``ctx._source`` itself, never on an alias of a nested map
(noida-db copies maps on assignment where Elasticsearch shares them), and the
tests run it against the real local API: ``tests/integration/test_elasticsearch_script.py``
checks that it agrees with ``plan_product`` on random event sequences.
"""

from __future__ import annotations

from typing import Any

from workers.elasticsearch_documents import (
    OFFER_GROUP,
    PREDICTION_GROUP,
    NormalisedUpsert,
    OfferUpdate,
    PredictionUpdate,
    SinkEvent,
)

# Each event: {"k": "n"|"p"|"o", "v": version, "f": fields}; "p"/"o" versions are
# [updated_at, produced_at] pairs, compared in that order (plan_product's tuples).
UPSERT_SCRIPT = """
boolean existed = ctx._source.containsKey('product_id');
def nv = null; def pv = null; def pat = null; def ov = null; def oat = null;
if (ctx._source.containsKey('versions') && ctx._source.versions != null) {
  nv = ctx._source.versions.normalised;
  pv = ctx._source.versions.prediction;
  pat = ctx._source.versions.prediction_at;
  ov = ctx._source.versions.offer;
  oat = ctx._source.versions.offer_at;
}
if (pv != null && pat == null) { pat = 0; }
if (ov != null && oat == null) { oat = 0; }
def da = params.deleted_at;
boolean changed = false;
for (def e : params.events) {
  if (e.k == 'n') {
    boolean stale = (nv != null && e.v <= nv) || (da != null && e.v <= da);
    if (!stale) {
      List old = new ArrayList(ctx._source.keySet());
      for (def key : old) {
        if (!params.kept.contains(key)) { ctx._source.remove(key); }
      }
      ctx._source.putAll(e.f);
      nv = e.v;
      changed = true;
    }
  } else {
    def cv = e.k == 'p' ? pv : ov;
    def cat = e.k == 'p' ? pat : oat;
    boolean stale = (cv != null && (e.v[0] < cv || (e.v[0] == cv && e.v[1] <= cat)))
        || (da != null && e.v[0] <= da);
    if (!stale) {
      for (def key : params.groups[e.k]) { ctx._source.remove(key); }
      ctx._source.putAll(e.f);
      if (e.k == 'p') { pv = e.v[0]; pat = e.v[1]; } else { ov = e.v[0]; oat = e.v[1]; }
      changed = true;
    }
  }
}
if (!changed) {
  ctx.op = 'noop';
} else {
  ctx._source.product_id = params.product_id;
  Map versions = new HashMap();
  versions.put('normalised', nv);
  versions.put('prediction', pv);
  versions.put('prediction_at', pv == null ? null : pat);
  if (ov != null) { versions.put('offer', ov); versions.put('offer_at', oat); }
  ctx._source.versions = versions;
}
"""

# Keys a normalised event does not own: everything else is replaced by its fields.
_KEPT = [*PREDICTION_GROUP, *OFFER_GROUP, "versions"]


def is_upsert(event: SinkEvent | None) -> bool:
    """Events the script applies (None: an event that needs no write)."""
    return event is None or isinstance(event, NormalisedUpsert | PredictionUpdate | OfferUpdate)


def script_update(
    product_id: str, events: list[SinkEvent | None], deleted_at: int | None
) -> dict[str, Any] | None:
    """The ``update`` body for ``product_id``'s buffered upsert events; None: nothing to send."""
    encoded = [_encode(e) for e in events if e is not None]
    if not encoded:
        return None
    return {
        "scripted_upsert": True,
        "upsert": {},
        "script": {
            "source": UPSERT_SCRIPT,
            "lang": "painless",
            "params": {
                "product_id": product_id,
                "deleted_at": deleted_at,
                "events": encoded,
                "kept": _KEPT,
                "groups": {"p": list(PREDICTION_GROUP), "o": list(OFFER_GROUP)},
            },
        },
    }


def _encode(event: SinkEvent) -> dict[str, Any]:
    if isinstance(event, NormalisedUpsert):
        return {"k": "n", "v": event.version, "f": event.fields}
    if isinstance(event, PredictionUpdate):
        return {"k": "p", "v": list(event.version), "f": event.fields}
    if isinstance(event, OfferUpdate):
        return {"k": "o", "v": list(event.version), "f": event.fields}
    raise ValueError(f"not an upsert event: {event!r}")
