"""Kafka and Elasticsearch APIs from one noida-db process (pinned noida-db==0.2.3)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from deploy.services.service import (
    LOCALHOST,
    Launch,
    Service,
    ServiceUnhealthy,
    StackError,
    find_executable,
    host_port,
    http_status,
    tcp_open,
)


class NoidaService(Service):
    """``noida-db start --only kafka,elasticsearch`` in the foreground."""

    name = "noida"
    port_names = ("kafka", "elasticsearch")
    # `noida-db stop elasticsearch` saves and stops one API while Kafka keeps serving (and
    # `start` brings it back on its port): an Elasticsearch outage that is not also a
    # Kafka outage, as a real deployment has them.
    apis = ("kafka", "elasticsearch")

    def __init__(self, startup_timeout_s: float = 60.0) -> None:
        self.startup_timeout_s = startup_timeout_s

    def launch(self, ports: Mapping[str, int], data_dir: Path) -> Launch:
        binary = server_binary()
        return Launch(
            command=[
                str(binary),
                "start",
                "--only",
                "kafka,elasticsearch",
                "--host",
                LOCALHOST,
                "--kafka-port",
                str(ports["kafka"]),
                "--elasticsearch-port",
                str(ports["elasticsearch"]),
                "--data-dir",
                str(data_dir),
            ]
        )

    def api_command(self, action: str, api: str, data_dir: Path) -> list[str]:
        binary = server_binary()
        return [str(binary), action, api, "--data-dir", str(data_dir)]

    def urls(self, ports: Mapping[str, int]) -> dict[str, str]:
        return {
            "kafka": f"{LOCALHOST}:{ports['kafka']}",
            "elasticsearch": f"http://{LOCALHOST}:{ports['elasticsearch']}",
        }

    def settings_env(self, urls: Mapping[str, str]) -> dict[str, str]:
        return {
            "CATSTREAM_KAFKA_BOOTSTRAP": urls["kafka"],
            "CATSTREAM_ELASTICSEARCH_URL": urls["elasticsearch"],
        }

    def check_health(self, urls: Mapping[str, str], timeout_s: float) -> None:
        check_elasticsearch(urls["elasticsearch"], timeout_s)
        check_kafka(urls["kafka"], timeout_s)


def check_elasticsearch(url: str, timeout_s: float) -> None:
    status = http_status(url.rstrip("/") + "/", timeout_s)
    if status != 200:
        raise ServiceUnhealthy(f"Elasticsearch GET {url}/ answered HTTP {status}")


def check_kafka(bootstrap: str, timeout_s: float) -> None:
    host, port = host_port(bootstrap)
    # A plain TCP probe first: librdkafka logs every refused connection loudly.
    if not tcp_open(host, port, timeout_s):
        raise ServiceUnhealthy(f"Kafka {bootstrap} refuses TCP connections")
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceUnhealthy(f"Kafka {bootstrap} did not list topics: {exc}") from exc


def server_binary() -> Path:
    """The noida-db server itself, not the ``noida-db`` console script.

    The script is a Python wrapper that runs the server with ``subprocess.call``: a
    SIGTERM kills the wrapper at once and orphans the server, which then got only the
    short grace left for orphans before SIGKILL. Killed that way, noida-db loses the
    records it acknowledged in its last second (``bench/broker_durability.py``: 108-229
    of 6,000 with SIGKILL, the one record in flight with SIGTERM). Run as the session
    leader, the server gets the full grace to save its data.
    """
    spec = importlib.util.find_spec("noida_db")
    if spec is not None and spec.origin is not None:
        server = Path(spec.origin).with_name("noida-db")
        if server.is_file() and os.access(server, os.X_OK):
            return server
    fallback = find_executable("noida-db")
    if fallback is None:
        raise StackError("noida-db is not installed; run `.venv/bin/pip install noida-db==0.2.3`")
    return fallback
