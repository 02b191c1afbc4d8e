"""Delete what one run (a test, a benchmark) wrote: its topics, indices and collection.

noida-db rewrites all it holds about once a second while anything changes (about 7 ms
of CPU per MB each time, bench/README), so the data earlier runs leave behind makes
every later run slower. Only runs with a topic prefix of their own are deleted: the
production topics (no prefix) can never match.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from catstream.kafka_config import librdkafka_config
from catstream.logs import get_logger
from catstream.settings import Settings
from workers.elasticsearch_index import elasticsearch_client, tombstone_index
from workers.milvus_collection import connect
from workers.offer_index import offer_index

log = get_logger(__name__)


class SharedTopicsError(ValueError):
    """The settings name the shared (unprefixed) topics: refuse to delete them."""


def run_topics(settings: Settings, topics: list[str]) -> list[str]:
    """The topics of ``topics`` this run owns: its prefix, and its app's internal topics
    (Faust changelogs and repartition topics start with ``<app_id>-``)."""
    if not settings.topic_prefix:
        raise SharedTopicsError(
            "these settings have no topic prefix, so their topics are the shared ones; "
            "set CATSTREAM_TOPIC_PREFIX to the run's own prefix"
        )
    owned = (settings.topic_prefix, f"{settings.app_id}-")
    return [topic for topic in topics if topic.startswith(owned)]


def delete_run_data(settings: Settings) -> None:
    """Delete this run's topics, Elasticsearch indices and Milvus collection; what cannot
    be deleted is logged (a leftover only costs later runs time)."""
    admin = AdminClient(librdkafka_config(settings))
    topics = run_topics(settings, list(admin.list_topics(timeout=10).topics))
    deleting = admin.delete_topics(topics, operation_timeout=30) if topics else {}
    for topic, future in deleting.items():
        try:
            future.result()
        except Exception as exc:
            log.warning("run_topic_not_deleted", topic=topic, error=str(exc))
    es = elasticsearch_client(settings)
    for index in (settings.elasticsearch_index, tombstone_index(settings), offer_index(settings)):
        es.options(ignore_status=404).indices.delete(index=index)
    milvus = connect(settings)
    if milvus.has_collection(settings.milvus_collection):
        milvus.drop_collection(settings.milvus_collection)
