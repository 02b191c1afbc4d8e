"""Every worker and sink process serves its Prometheus metrics over HTTP.

The metrics (``catstream.metrics``) live in the process that counts them: the agents'
throughput, batch sizes and Triton latency in the worker, each sink's writes and lag in
its own process. Only the API process served ``/metrics`` before, so in the production
shape (agents and sinks in pods without the API) nothing could scrape them.
"""

from __future__ import annotations

from prometheus_client import start_http_server

from catstream.logs import get_logger
from catstream.metrics import REGISTRY
from catstream.settings import Settings

log = get_logger(__name__)


def serve_metrics(settings: Settings, process: str) -> int:
    """Serve ``/metrics`` on ``settings.metrics_port`` (0: a free port) in a daemon
    thread; returns the port. A port in use fails the start, with what to change."""
    try:
        server, _thread = start_http_server(
            settings.metrics_port, addr=settings.api_host, registry=REGISTRY
        )
    except OSError as exc:
        raise SystemExit(
            f"{process}: cannot serve metrics on {settings.api_host}:{settings.metrics_port} "
            f"({exc.strerror}); set CATSTREAM_METRICS_PORT to a free port, or to 0 for any "
            "free one (the port is logged at start)"
        ) from exc
    port = int(server.server_address[1])
    log.info("metrics_serving", process=process, url=f"http://{settings.api_host}:{port}/metrics")
    return port
