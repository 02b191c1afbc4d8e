"""A worker that stops cleanly leaves its consumer group, static member or not.

The agents' group uses static membership (``group.instance.id``, see
``streams.app``): a worker killed with ``kill -9`` is never evicted by the local
broker, and its restart under the same slot id takes its partitions back at once.
aiokafka, like the Java client (KIP-345), sends no ``LeaveGroup`` when a static
member closes: the broker is meant to drop it when its session times out. The
local broker (noida-db) never times a session out, so a worker that stopped kept
its partitions for good: scaling in from two workers to one stopped the stream
(``test_workers_joining_and_leaving_one_group_lose_nothing_and_duplicate_nothing``);
against Kafka the same stop costs a whole ``broker_session_timeout`` (60 s) of
those partitions standing still.

:func:`install_leave_on_close` makes a closing static member send ``LeaveGroup``
with its member id, as a dynamic member does: the broker rebalances at once and
the other workers take its partitions. Only a clean close leaves; a missed poll
interval or a crash keep static membership's behaviour (a restart with the same
slot id reclaims the partitions without a rebalance).
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from catstream.logs import get_logger

log = get_logger(__name__)

_ORIGINAL_CLOSE = GroupCoordinator.close


def install_leave_on_close() -> None:
    """Make every aiokafka group coordinator in this process leave its group on close."""
    GroupCoordinator.close = _close


async def _close(self: Any) -> None:
    if not self._closing.done() and self._group_instance_id is not None:
        # Upstream close() finishes the coordination task, stops the heartbeat, then calls
        # _maybe_leave_group(), which skips static members and resets the generation.
        # Leave first, on this instance only, while member id and generation are valid.
        original_leave = self._maybe_leave_group

        async def leave_then_reset() -> None:
            await leave_group(self)
            await original_leave()

        self._maybe_leave_group = leave_then_reset
    await _ORIGINAL_CLOSE(self)


async def leave_group(coordinator: Any) -> bool:
    """Send ``LeaveGroup`` for ``coordinator``'s member; True when the broker accepted it."""
    if not coordinator.member_id:  # never joined, or already reset
        return False
    group, instance = coordinator.group_id, coordinator._group_instance_id
    try:
        response = await coordinator._send_req(
            LeaveGroupRequest(coordinator.group_id, coordinator.member_id)
        )
    except KafkaError as error:
        # Best effort, as upstream's own leave: the broker drops us when the session ends.
        log.warning("leave_group_failed", group=group, instance=instance, error=repr(error))
        return False
    if response.error_code:
        log.warning("leave_group_refused", group=group, instance=instance, code=response.error_code)
        return False
    log.info("left_group", group=group, instance=instance)
    return True
