"""Handling one message until it is done, as every agent does.

Recoverable errors (a dependency down, a timeout) back off and retry the same message;
an invalid message was already dead-lettered by the step. When the dead-letter guard
trips, the process stops and the message must not be acked, so a restart sees it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from catstream.backoff import retry_async
from catstream.errors import DeadLetterLimitExceeded
from catstream.liveness import LIVENESS


async def handle_until_done(
    stage: str, handle: Callable[[], Awaitable[object]], dependency: str
) -> bool:
    """Run ``handle`` until it is done; False when the process is stopping (do not ack)."""
    try:
        await retry_async(handle, dependency=dependency)
    except DeadLetterLimitExceeded as exc:
        LIVENESS.stop_process(stage, str(exc))
        return False
    return True
