"""``catstream sink milvus|elasticsearch``: one sink as its own process.

Production runs each sink in its own container (deploy/production/sinks.yaml), so
a sink's CPU, its interpreter lock and its restarts are its own, not the stream
worker's. The sink thread is supervised as in ``catstream worker --sinks`` (which
stays, for the demo): a crash restarts it after a back-off; SIGTERM stops it
after its open batch is flushed and committed; a tripped dead-letter guard ends
the process non-zero so its supervisor restarts it.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from catstream.liveness import EXIT_GUARD_TRIPPED, LIVENESS
from catstream.logs import get_logger
from catstream.metrics_endpoint import serve_metrics
from catstream.settings import Settings

log = get_logger(__name__)
SINKS = ("milvus", "elasticsearch")


def register(sub: Any, name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("sink", choices=SINKS, help="which sink to run")
    parser.add_argument(
        "--instance-id",
        help="slot id for static group membership (default CATSTREAM_WORKER_INSTANCE_ID)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.instance_id:
        settings = settings.model_copy(update={"worker_instance_id": args.instance_id})
    return run_sink_process(args.sink, settings)


def run_sink_process(sink: str, settings: Settings) -> int:
    """Run ``sink`` until SIGTERM/SIGINT; returns the process exit code."""
    from workers.worker_services import supervised_sink

    if sink == "milvus":
        from workers.milvus_sink import run_milvus_sink as run
    else:
        from workers.elasticsearch_sink import run_elasticsearch_sink as run
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("sink_stopping", sink=sink, signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve_metrics(settings, f"{sink} sink")
    log.info("sink_process_starting", sink=sink, instance=settings.worker_instance_id)
    name = "milvus-sink" if sink == "milvus" else "es-sink"
    thread = threading.Thread(
        target=supervised_sink, args=(name, run, settings, stop), name=name, daemon=True
    )
    thread.start()
    while thread.is_alive():
        thread.join(0.5)  # the main thread stays free to take signals
        if LIVENESS.stopping:
            stop.set()
    if LIVENESS.stopping:
        log.error("sink_stopped_unfit", reasons=LIVENESS.stopping, exit_code=EXIT_GUARD_TRIPPED)
        return EXIT_GUARD_TRIPPED
    return 0
