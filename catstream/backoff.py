"""Exponential back-off with jitter, the one schedule every retry loop uses.

A recoverable error (service down, 429, timeout) is retried, never skipped:
the stage waits ``delay_s(attempt)`` and tries the same work again, without
committing past it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from catstream.errors import RecoverableError
from catstream.logs import get_logger
from catstream.metrics import DEGRADED

T = TypeVar("T")
log = get_logger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (0-based) waits about ``base_delay_s * 2**n``, capped at ``max_delay_s``."""

    base_delay_s: float = 0.1
    max_delay_s: float = 5.0

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based).

        "Equal jitter": half the capped exponential delay is fixed, half random, so
        clients that failed together do not all come back at the same instant, yet
        every client still waits at least half the back-off.
        """
        capped = min(self.max_delay_s, self.base_delay_s * (2 ** min(attempt, 32)))
        return capped / 2 + (rng or random).uniform(0, capped / 2)


def retry_blocking(
    call: Callable[[], T],
    *,
    dependency: str,
    wait: Callable[[float], bool],
    backoff: Backoff = Backoff(base_delay_s=0.2, max_delay_s=10.0),
) -> T:
    """``call()`` until it stops raising ``RecoverableError`` (for blocking stages).

    ``wait(delay)`` sleeps and returns False to give up (shutting down); the error is
    then re-raised, so nothing after the failed call (a commit) runs.
    """
    attempt = 0
    while True:
        try:
            result = call()
        except RecoverableError as exc:
            delay = _retrying(dependency, attempt, exc, backoff)
            attempt += 1
            if not wait(delay):
                raise
            continue
        _recovered(dependency, attempt)
        return result


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    dependency: str,
    recoverable: tuple[type[BaseException], ...] = (RecoverableError,),
    backoff: Backoff = Backoff(base_delay_s=0.5, max_delay_s=30.0),
) -> T:
    """``await call()`` until it stops raising one of ``recoverable`` (for the agents)."""
    attempt = 0
    while True:
        try:
            result = await call()
        except recoverable as exc:
            delay = _retrying(dependency, attempt, exc, backoff)
            attempt += 1
            await asyncio.sleep(delay)
            continue
        _recovered(dependency, attempt)
        return result


def _retrying(dependency: str, attempt: int, exc: BaseException, backoff: Backoff) -> float:
    delay = backoff.delay_s(attempt)
    DEGRADED.labels(dependency=dependency).set(1)
    log.warning(
        "retrying",
        dependency=dependency,
        attempt=attempt + 1,
        delay_s=round(delay, 2),
        error=str(exc),
    )
    return delay


def _recovered(dependency: str, attempts: int) -> None:
    if attempts:
        DEGRADED.labels(dependency=dependency).set(0)
        log.info("recovered", dependency=dependency, attempts=attempts)
