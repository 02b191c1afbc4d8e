"""Every Prometheus metric catstream exposes, defined in one place.

Stages import the metric objects from here; the worker's ``/metrics`` serves
``REGISTRY``. Names follow ``catstream_<stage>_<what>_<unit>``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "catstream_events_total",
    "Events handled, by stage and outcome",
    ["stage", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "catstream_dead_letters_total",
    "Events sent to the dead-letter topic, by stage and reason (error: the error class, "
    "e.g. InvalidJson, ProcessingBug; the letter's reason text says what to do)",
    ["stage", "error"],
    registry=REGISTRY,
)
DEADLETTER_GUARD_TRIPPED = Gauge(
    "catstream_deadletter_guard_tripped",
    "1 once a stage's dead-letter guard stopped the process (too many ProcessingBug letters)",
    ["stage"],
    registry=REGISTRY,
)
SINK_RESTARTS = Counter(
    "catstream_sink_restarts_total",
    "Sink threads restarted after they died, by sink",
    ["sink"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "catstream_stage_seconds",
    "Time spent handling one event or batch, by stage",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "catstream_batch_size",
    "Products per micro-batch, by stage",
    ["stage"],
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
TRITON_SECONDS = Histogram(
    "catstream_triton_request_seconds",
    "Triton inference latency, by model",
    ["model"],
    registry=REGISTRY,
)
TRITON_ERRORS = Counter(
    "catstream_triton_errors_total",
    "Failed Triton calls (each retry counts), by model",
    ["model"],
    registry=REGISTRY,
)
PIPELINE_FALLBACKS = Counter(
    "catstream_product_pipeline_fallbacks_total",
    "Micro-batches product_pipeline failed on, sent as direct image_encoder + categoriser calls",
    registry=REGISTRY,
)
# Kafka timestamp → outputs confirmed: what each hop adds to publish → prediction (the
# stage histograms above time only the work, not the waits before it).
RECORD_AGE_SECONDS = Histogram(
    "catstream_record_age_seconds",
    "Seconds from a record's Kafka timestamp to its stage's outputs being confirmed, by stage",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge(
    "catstream_consumer_lag",
    "Records between the committed offset and the end of the partition",
    ["topic", "partition"],
    registry=REGISTRY,
)
REVIEW_ITEMS = Counter(
    "catstream_review_items_total",
    "Products considered for review, by outcome (sent, over_budget, duplicate)",
    ["outcome"],
    registry=REGISTRY,
)
STALE_EVENTS = Counter(
    "catstream_stale_events_total",
    "Events dropped because a newer update for the product was already seen",
    registry=REGISTRY,
)
SINK_WRITES = Counter(
    "catstream_sink_writes_total",
    "Documents written by a sink, by sink and operation",
    ["sink", "op"],
    registry=REGISTRY,
)
SINK_RETRIES = Counter(
    "catstream_sink_retries_total",
    "Sink retries after a recoverable error, by sink",
    ["sink"],
    registry=REGISTRY,
)
DEGRADED = Gauge(
    "catstream_degraded",
    "1 while a dependency is unavailable and the worker is retrying, by dependency",
    ["dependency"],
    registry=REGISTRY,
)
SINK_CONFLICTS = Counter(
    "catstream_sink_version_conflicts_total",
    "Writes refused with 409 because the stored document changed or is newer, by sink and kind",
    ["sink", "kind"],
    registry=REGISTRY,
)
IMAGE_FETCHES = Counter(
    "catstream_image_fetches_total",
    "Product image fetches, by outcome (ok or a failure reason) and source (network|memory|disk)",
    ["outcome", "source"],
    registry=REGISTRY,
)
IMAGE_FETCH_SECONDS = Histogram(
    "catstream_image_fetch_seconds",
    "Time to download one product image from the network (cache hits excluded)",
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
)
IMAGE_FETCH_BYTES = Histogram(
    "catstream_image_fetch_bytes",
    "Size of product images downloaded from the network",
    registry=REGISTRY,
    buckets=(1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7),
)

IMAGE_VECTOR_CACHE = Counter(
    "catstream_image_vector_cache_total",
    "Fetched images looked up among recently encoded ones (hit: not sent to the image "
    "encoder), by outcome",
    ["outcome"],
    registry=REGISTRY,
)

# --- same-product matching (issue 12) ---------------------------------------
OFFER_GROUP_SIZES = Histogram(
    "catstream_offer_group_size",
    "Size (products) of each offer group the matching agent published, counted per publish",
    registry=REGISTRY,
    buckets=(1, 2, 3, 4, 5, 8, 13, 21, 50, 100),
)
MATCH_CANDIDATES = Histogram(
    "catstream_match_candidates",
    "Candidates scored per matched product (Milvus and Elasticsearch, deduplicated)",
    registry=REGISTRY,
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200),
)
MATCH_PAIRS = Counter(
    "catstream_match_pairs_total",
    "Candidate pairs scored by the matcher, by verdict (accepted, rejected, conflict)",
    ["verdict"],
    registry=REGISTRY,
)
# Matching under concurrent workers (issue 12): regroupings recomputed because another
# worker changed the offer documents first, or because a concurrent product appeared.
MATCH_RETRIES = Counter(
    "catstream_match_retries_total",
    "Regroupings the matching agent redid, by reason (write_conflict, new_candidate)",
    ["reason"],
    registry=REGISTRY,
)
MATCH_SECONDS = Histogram(
    "catstream_match_seconds",
    "Time the matching agent added per product (candidates, scoring, grouping, publishing)",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OFFER_GROUPS = Gauge(
    "catstream_offer_groups",
    "Offer groups in the offer index, by size (products; 10+ for ten or more)",
    ["size"],
    registry=REGISTRY,
)
