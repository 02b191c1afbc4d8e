"""Creating catstream's topics, idempotently, with the confluent-kafka AdminClient."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings

# Dead letters and review items are read by people and tools long after the fact.
_RETENTION_MS = {"deadletter": 30 * 24 * 3600 * 1000, "review": 14 * 24 * 3600 * 1000}
# Offer groups are state keyed by product: only each product's latest group matters.
_COMPACTED = frozenset({"matches"})


def _topic_config(key: str) -> dict[str, str]:
    config = {"retention.ms": str(_RETENTION_MS[key])} if key in _RETENTION_MS else {}
    if key in _COMPACTED:
        config["cleanup.policy"] = "compact"
    return config


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create every product topic that does not exist yet; returns name → outcome."""
    admin = AdminClient(librdkafka_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(
            settings.topic(key),
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config=_topic_config(key),
        )
        for key in _topic_keys()
        if settings.topic(key) not in existing
    ]
    outcomes = {settings.topic(key): "exists" for key in _topic_keys()}
    if not wanted:
        return outcomes
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            outcomes[name] = "created"
        except KafkaException as exc:
            # Another process may have created it between list and create.
            if "already exists" in str(exc).lower() or "TOPIC_ALREADY_EXISTS" in str(exc):
                outcomes[name] = "exists"
            else:
                raise RuntimeError(
                    f"could not create topic {name}: {exc}. Check that Kafka at "
                    f"{settings.kafka_bootstrap} is up (catstream stack status) and that this "
                    "principal may create topics."
                ) from exc
    return outcomes


def _topic_keys() -> tuple[str, ...]:
    from catstream.settings import TOPIC_KEYS

    return TOPIC_KEYS
