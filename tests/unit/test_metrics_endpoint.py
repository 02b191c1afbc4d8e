"""Each worker and sink process serves /metrics on its own port (catstream/metrics_endpoint.py)."""

from __future__ import annotations

import socket

import httpx
import pytest

from catstream.metrics import EVENTS
from catstream.metrics_endpoint import serve_metrics
from catstream.settings import Settings


def test_a_process_serves_its_counters_on_a_free_port() -> None:
    EVENTS.labels(stage="metrics-endpoint-test", outcome="written").inc(3)
    port = serve_metrics(Settings(metrics_port=0), "worker")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'stage="metrics-endpoint-test"' in text
    assert "# TYPE catstream_stage_seconds histogram" in text


def test_a_port_in_use_fails_the_start_saying_what_to_set() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match="set CATSTREAM_METRICS_PORT to a free port"):
            serve_metrics(Settings(metrics_port=port), "milvus sink")
