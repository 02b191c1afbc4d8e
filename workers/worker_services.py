"""Running the sinks and the HTTP API inside the worker process.

Production runs each role as its own deployment; locally (the demo, the end
to end tests) one ``catstream worker --sinks --api`` runs everything. The sinks
are blocking confluent-kafka loops, so each gets a thread; the API is served
on the worker's event loop. Both stop when Faust shuts down.

A sink thread that dies (an exception nobody caught, e.g. a broken client) is
restarted after a back-off; while it is down ``/health`` says so. A sink that
stopped the process on purpose (its dead-letter guard tripped) is not restarted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import faust

from catstream.backoff import Backoff
from catstream.liveness import LIVENESS, Liveness
from catstream.logs import get_logger
from catstream.metrics import SINK_RESTARTS
from catstream.settings import Settings
from workers.api import run_api
from workers.elasticsearch_sink import run_elasticsearch_sink
from workers.milvus_sink import run_milvus_sink
from workers.review_app import ImageSource
from workers.similar import SimilarProducts

log = get_logger(__name__)


def attach_sinks(app: faust.App, settings: Settings) -> None:
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=supervised_sink, args=(name, run, settings, stop), name=name, daemon=True
        )
        for name, run in (("milvus-sink", run_milvus_sink), ("es-sink", run_elasticsearch_sink))
    ]

    @app.task
    async def start_sinks() -> None:
        for thread in threads:
            thread.start()
        log.info("sinks_started", sinks=[t.name for t in threads])

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    def stop_sinks(app: faust.App, **_: Any) -> None:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        log.info("sinks_stopped")


SinkRun = Callable[[Settings, threading.Event], None]


def supervised_sink(
    name: str,
    run: SinkRun,
    settings: Settings,
    stop: threading.Event,
    *,
    liveness: Liveness = LIVENESS,
    backoff: Backoff = Backoff(base_delay_s=1.0, max_delay_s=30.0),
) -> None:
    """Run one sink until ``stop`` is set, restarting it whenever it dies."""
    attempt = 0
    while not stop.is_set() and not liveness.stopping:
        try:
            run(settings, stop)
            if stop.is_set() or liveness.stopping:
                break
            error = "returned without being asked to stop"
        except Exception as exc:  # the thread must outlive any one failure of its sink
            error = f"{type(exc).__name__}: {exc}"
            log.error("sink_died", sink=name, exc_info=exc)
        delay = backoff.delay_s(attempt)
        attempt += 1
        liveness.problem(
            name,
            f"sink thread died ({error[:200]}); restarting in {delay:.0f} s (restart {attempt}); "
            "nothing it did not commit is lost, see the worker log for the traceback",
        )
        SINK_RESTARTS.labels(sink=name).inc()
        if stop.wait(delay):
            break
        liveness.problem(name, None)
        log.info("sink_restarting", sink=name, restart=attempt)
    liveness.problem(name, None)


def attach_api(app: faust.App, settings: Settings, images: ImageSource | None = None) -> None:
    """Serve the API on the worker's loop; ``images`` feeds the review app's image proxy."""

    @app.task
    async def serve_api() -> None:
        await run_api(settings, similar=SimilarProducts(settings), images=images)
