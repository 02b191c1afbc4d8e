"""Readiness checks for the four services the worker needs, and for the process itself.

Each check is an ``async () -> bool`` that answers within a couple of seconds;
``False`` or an exception means the service is not ready. Blocking clients
(confluent-kafka, elasticsearch, pymilvus) run in a thread so a hung service
cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from catstream.errors import CatstreamError
from catstream.kafka_config import librdkafka_config
from catstream.liveness import LIVENESS, Liveness
from catstream.settings import Settings
from workers.elasticsearch_index import elasticsearch_client

HealthCheck = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_S = 3.0


def default_health_checks(settings: Settings) -> dict[str, HealthCheck]:
    """Kafka, Triton, Milvus and Elasticsearch, as configured in ``settings``, and the process."""
    return {
        "process": process_check(LIVENESS),
        "kafka": lambda: asyncio.to_thread(_kafka_answers, settings),
        "triton": lambda: _triton_ready(settings),
        "milvus": lambda: asyncio.to_thread(_milvus_answers, settings),
        "elasticsearch": lambda: asyncio.to_thread(_elasticsearch_answers, settings),
    }


async def run_checks(checks: dict[str, HealthCheck]) -> dict[str, dict[str, Any]]:
    """Run every check concurrently; name → {"ok", "ms", and "error" when not ok}."""
    names = list(checks)
    results = await asyncio.gather(*(_timed(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


async def _timed(check: HealthCheck) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        ok = bool(await asyncio.wait_for(check(), CHECK_TIMEOUT_S))
        error = None if ok else "not ready"
    except TimeoutError:
        ok, error = False, f"no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:  # any failure means "not ready"; the text says which
        ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
    result: dict[str, Any] = {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1)}
    if error is not None:
        result["error"] = error
    return result


class ProcessUnfit(CatstreamError):
    """The process is stopping or one of its components is down."""


def process_check(liveness: Liveness) -> HealthCheck:
    """Not ready while a dead-letter guard is stopping the process or a sink is down."""

    async def check() -> bool:
        stopping, problems = liveness.stopping, liveness.problems
        if stopping:
            raise ProcessUnfit(
                "stopping: " + "; ".join(f"{name}: {why}" for name, why in stopping.items())
            )
        if problems:
            raise ProcessUnfit("; ".join(f"{name}: {why}" for name, why in problems.items()))
        return True

    return check


def _kafka_answers(settings: Settings) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_config(settings))
    metadata = admin.list_topics(timeout=CHECK_TIMEOUT_S - 0.5)
    return bool(metadata.brokers)


def _elasticsearch_answers(settings: Settings) -> bool:
    client = elasticsearch_client(settings, timeout_s=CHECK_TIMEOUT_S - 0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _milvus_answers(settings: Settings) -> bool:
    from workers.milvus_collection import connect  # pymilvus is slow to import

    client = connect(settings, timeout_s=CHECK_TIMEOUT_S - 0.5)
    try:
        client.list_collections(timeout=CHECK_TIMEOUT_S - 0.5)
        return True
    finally:
        client.close()


async def _triton_ready(settings: Settings) -> bool:
    url = settings.triton_http_url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    timeout = aiohttp.ClientTimeout(total=CHECK_TIMEOUT_S - 0.5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{url}/v2/health/ready") as response,
    ):
        return response.status == 200
