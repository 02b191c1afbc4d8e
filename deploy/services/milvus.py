"""Milvus: milvus-lite's gRPC server (default) or the standalone ``milvus`` package.

Server mode, not the embedded ``MilvusClient("file.db")``: the worker, the sinks,
the API and the tests are separate processes that must share one collection.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from deploy.services.service import (
    LOCALHOST,
    Launch,
    Service,
    ServiceUnhealthy,
    StackError,
    find_executable,
    host_port,
    tcp_open,
)

MilvusMode = Literal["lite", "standalone"]
STANDALONE_INSTALL_HINT = (
    "the standalone Milvus server is an optional extra; install it with "
    "`.venv/bin/pip install -e '.[milvus-standalone]'` (or use the default `--milvus lite`)"
)


class MilvusService(Service):
    """``milvus-lite server`` or ``milvus-server``, serving gRPC on one port."""

    name = "milvus"
    port_names = ("milvus",)

    def __init__(self, mode: MilvusMode = "lite", startup_timeout_s: float = 60.0) -> None:
        self.mode = mode
        # The standalone server unpacks its binaries and starts etcd first: slower.
        self.startup_timeout_s = startup_timeout_s if mode == "lite" else startup_timeout_s * 3

    def launch(self, ports: Mapping[str, int], data_dir: Path) -> Launch:
        port = str(ports["milvus"])
        if self.mode == "lite":
            if importlib.util.find_spec("milvus_lite") is None:
                raise StackError("milvus-lite is not installed; run `.venv/bin/pip install -e .`")
            # milvus-lite's own server, with the keepalive policy pymilvus needs
            # (see deploy/services/milvus_lite_server.py for why not `milvus-lite server`).
            command = [sys.executable, "-m", "deploy.services.milvus_lite_server"]
            command += ["--data-dir", str(data_dir), "--host", LOCALHOST, "--port", port]
            return Launch(command=command, cwd=data_dir)
        binary = find_executable("milvus-server")
        if binary is None:
            raise StackError(STANDALONE_INSTALL_HINT)
        # milvus-server picks free ports for its internal components (etcd, coords) itself.
        return Launch(
            command=[str(binary), "--data", str(data_dir), "--proxy-port", port], cwd=data_dir
        )

    def urls(self, ports: Mapping[str, int]) -> dict[str, str]:
        return {"milvus": f"http://{LOCALHOST}:{ports['milvus']}"}

    def settings_env(self, urls: Mapping[str, str]) -> dict[str, str]:
        return {"CATSTREAM_MILVUS_URI": urls["milvus"]}

    def check_health(self, urls: Mapping[str, str], timeout_s: float) -> None:
        check_milvus(urls["milvus"], timeout_s)


def check_milvus(uri: str, timeout_s: float) -> None:
    host, port = host_port(uri)
    if not tcp_open(host, port, timeout_s):
        raise ServiceUnhealthy(f"Milvus {uri} refuses TCP connections")
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri=uri, timeout=timeout_s)
        try:
            client.list_collections()
        finally:
            client.close()
    except Exception as exc:  # pymilvus raises many unrelated types for "not ready"
        raise ServiceUnhealthy(f"Milvus {uri} did not list collections: {exc}") from exc
