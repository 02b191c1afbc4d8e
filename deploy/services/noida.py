"""Kafka and Elasticsearch APIs from one noida-db process (pinned noida-db==0.2.3)."""

from __future__ import annotations

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

    def __init__(self, startup_timeout_s: float = 60.0) -> None:
        self.startup_timeout_s = startup_timeout_s

    def launch(self, ports: Mapping[str, int], data_dir: Path) -> Launch:
        binary = find_executable("noida-db")
        if binary is None:
            raise StackError(
                "noida-db is not installed; run `.venv/bin/pip install noida-db==0.2.3`"
            )
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
