"""milvus-lite's gRPC server, as ``milvus-lite server`` runs it, but keepalive-friendly.

``python -m deploy.services.milvus_lite_server --data-dir D --host H --port P``

Why not ``milvus-lite server`` itself: its grpc.server keeps gRPC's default
keepalive enforcement (one ping per 5 minutes without calls), while pymilvus
clients ping every 10 s even when idle. After two such pings the server sends
GOAWAY "too_many_pings" and pymilvus' connection recovery fails, so any
long-lived client (a sink, the API, the stack's own health checks) breaks
after ~30 s idle. Real Milvus permits those pings; so does this server. It
also stops gracefully on SIGTERM (drains requests, closes the data dir).

It also binds filter templates (pymilvus ``filter_params``), which milvus-lite
ignores: ``TemplatingServicer`` renders them into the expression first
(``workers/milvus_filters.py``), so catstream's parameterised filters mean on the local
stack what they mean on real Milvus.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from concurrent import futures
from types import FrameType
from typing import Any

import grpc
from milvus_lite.adapter.grpc.servicer import MilvusServicer
from milvus_lite.db import MilvusLite
from pymilvus.grpc_gen import milvus_pb2_grpc

from workers.milvus_filters import TemplateError, render_proto

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # as milvus-lite and Milvus standalone
# What Milvus standalone enforces: pings allowed every 5 s, also without calls.
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
]


class TemplatingServicer(MilvusServicer):
    """milvus-lite's servicer, with ``expr_template_values`` bound before parsing."""

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:
        _bind_templates(request, "dsl", context)
        return super().Search(request, context)

    def Query(self, request: Any, context: grpc.ServicerContext) -> Any:
        _bind_templates(request, "expr", context)
        return super().Query(request, context)

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        _bind_templates(request, "expr", context)
        return super().Delete(request, context)


def _bind_templates(request: Any, field: str, context: grpc.ServicerContext) -> None:
    if not request.expr_template_values:
        return
    try:
        rendered = render_proto(getattr(request, field), request.expr_template_values)
    except TemplateError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"filter_params: {exc}")
    setattr(request, field, rendered)
    request.expr_template_values.clear()


def build_server(db: MilvusLite, max_workers: int) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *KEEPALIVE_OPTIONS,
        ],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(TemplatingServicer(db), server)
    return server


def serve(data_dir: str, host: str, port: int, max_workers: int) -> None:
    db = MilvusLite(data_dir)
    server = build_server(db, max_workers)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        db.close()
        raise SystemExit(f"milvus: port {port} is already in use; pick another --port")
    server.start()
    print(f"milvus-lite gRPC server listening on {host}:{port} (data_dir={data_dir!r})", flush=True)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stopping.wait()
    finally:
        server.stop(grace=3).wait()
        db.close()
        print("milvus-lite stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="milvus-lite-server", description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19530)
    parser.add_argument("--max-workers", type=int, default=10)
    args = parser.parse_args(argv)
    serve(args.data_dir, args.host, args.port, args.max_workers)


if __name__ == "__main__":
    main()
