"""A static group member that closes hands its partitions over at once (issue 10).

Workers are static members of the agents' group (``group.instance.id``). Without
``streams.static_membership`` a closing static member sent no ``LeaveGroup``; the
local broker never times a session out, so the remaining worker never got the
partitions of one that stopped, and the stream stood still. The check is broker-
independent: the hand-over must come well before the session timeout, which is
when a broker that does time sessions out would have moved the partitions anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from catstream.settings import Settings
from streams.static_membership import install_leave_on_close
from streams.topics import create_topics

SESSION_TIMEOUT_MS = 30_000
PARTITIONS = 4


def test_a_static_member_that_closes_hands_its_partitions_over_at_once(
    topic_settings: Settings,
) -> None:
    settings = topic_settings.model_copy(update={"topic_partitions": PARTITIONS})
    create_topics(settings)
    install_leave_on_close()
    handed_over_s = asyncio.run(_close_one_of_two(settings))
    assert handed_over_s < SESSION_TIMEOUT_MS / 1000 / 2


async def _close_one_of_two(settings: Settings) -> float:
    """Seconds from one member's close until the other owns every partition."""
    leaving, staying = (_member(settings, slot) for slot in ("w0", "w1"))
    await leaving.start()
    await staying.start()
    try:
        await _poll_until(
            [leaving, staying],
            lambda: bool(leaving.assignment()) and bool(staying.assignment()),
            60,
            "both members to own partitions",
        )
        await leaving.stop()
        closed = time.monotonic()
        await _poll_until(
            [staying],
            lambda: len(staying.assignment()) == PARTITIONS,
            SESSION_TIMEOUT_MS / 1000,
            "the remaining member to own every partition",
        )
        return time.monotonic() - closed
    finally:
        await leaving.stop()
        await staying.stop()


def _member(settings: Settings, slot: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        settings.topic("raw"),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,
        group_instance_id=f"{settings.app_id}-{slot}",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
    )


async def _poll_until(
    members: list[AIOKafkaConsumer], done: Callable[[], bool], timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        await asyncio.gather(*(member.getmany(timeout_ms=200) for member in members))
