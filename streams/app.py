"""The Faust application: one per worker process, built from Settings.

Choices that matter for delivery guarantees:

* ``consumer_group_instance_id`` (static membership): the local broker never
  evicts a consumer killed with ``kill -9``; a restarted worker with the same
  slot id takes its partitions back at once. A worker that stops cleanly leaves
  the group all the same (``streams.static_membership``), so the others take
  its partitions at once.
* ``processing_guarantee="at_least_once"`` with acks after an event's outputs
  are sent; Faust flushes the producer before every offset commit.
* ``store="memory://"``: tables are rebuilt from their changelog topics on
  start, so the only durable state is in Kafka.
"""

from __future__ import annotations

from typing import Any

import faust

from catstream.kafka_config import faust_broker_options
from catstream.settings import Settings
from streams.fetch_backoff import install_fetch_backoff
from streams.offset_tracking import install_offset_fix
from streams.static_membership import install_leave_on_close


def faust_group_id(settings: Settings, *, runs_agents: bool) -> str:
    """The Faust app id, which is also its Kafka consumer group.

    A process that runs no agents (the sinks or the API on their own, as in
    deploy/production) still starts a Faust consumer. In the agents' group it
    would take part in every rebalance of theirs (an ``IllegalGenerationError``
    rebalance each time it starts, with partitions it never reads); in the chaos
    run the agents' stream then never delivered again. It gets a group of its own.
    """
    return settings.app_id if runs_agents else f"{settings.app_id}-no-agents"


def create_app(settings: Settings, *, runs_agents: bool = True) -> faust.App:
    """A configured (not yet started) Faust app with no agents."""
    install_offset_fix()
    install_fetch_backoff(settings.idle_fetch_backoff_max_ms / 1000)
    install_leave_on_close()
    group = faust_group_id(settings, runs_agents=runs_agents)
    datadir = settings.home / "faust" / settings.worker_instance_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = faust_broker_options(settings)
    return faust.App(
        group,
        **options,
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_group_instance_id=f"{group}-{settings.worker_instance_id}",
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        # Agents ack explicitly and ignore records they must not handle (see
        # streams.contiguity); waiting for every fetched record to be acked would
        # hang shutdown. Unacked records are simply processed again.
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        # Outputs are sent without awaiting each and confirmed per batch: let them
        # share produce requests.
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_batch_bytes,
        # Compressed batches: fewer bytes the broker stores, moves and (noida-db) snapshots.
        producer_compression_type=(
            None if settings.producer_compression == "none" else settings.producer_compression
        ),
        producer_max_request_size=max(
            settings.max_message_bytes * 2, settings.producer_max_request_bytes
        ),
    )


def product_topic(app: faust.App, settings: Settings, key: str) -> faust.TopicT:
    """The faust topic for a logical catstream topic (``raw``, ``normalised``, ...)."""
    return app.topic(
        settings.topic(key),
        partitions=settings.topic_partitions,
        replicas=settings.topic_replication,
        value_serializer="raw",
        key_serializer="raw",
    )
