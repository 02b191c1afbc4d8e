"""Running the sinks and the HTTP API inside the worker process.

Production runs each role as its own deployment; locally (the demo, the end
to end tests) one ``catstream worker --sinks --api`` runs everything. The sinks
are blocking confluent-kafka loops, so each gets a thread; the API is served
on the worker's event loop. Both stop when Faust shuts down.
"""

from __future__ import annotations

import threading
from typing import Any

import faust

from catstream.logs import get_logger
from catstream.settings import Settings
from workers.api import run_api
from workers.elasticsearch_sink import run_elasticsearch_sink
from workers.milvus_sink import run_milvus_sink
from workers.similar import SimilarProducts

log = get_logger(__name__)


def attach_sinks(app: faust.App, settings: Settings) -> None:
    stop = threading.Event()
    threads = [
        threading.Thread(target=run, args=(settings, stop), name=name, daemon=True)
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


def attach_api(app: faust.App, settings: Settings) -> None:
    @app.task
    async def serve_api() -> None:
        await run_api(settings, similar=SimilarProducts(settings))
