"""The local stack: every service answers its real protocol; up/down/ports behave.

The session stack (``stack`` fixture) serves the protocol tests. The lifecycle
tests start their own small stacks in temporary homes (Triton without models,
so each starts in seconds) and check that nothing is left running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from elasticsearch import ConnectionError as ElasticsearchConnectionError
from elasticsearch import Elasticsearch
from pymilvus import MilvusClient

from catstream.settings import Settings
from deploy.services import processes
from deploy.services.milvus import MilvusService
from deploy.services.service import Launch
from deploy.services.triton import repository_index, servable_models
from deploy.stack import Stack, StackError, StackTimeouts
from deploy.stack_cli import format_table, redact
from tests.conftest import RunningStack

# --- the session stack answers every protocol ---------------------------------------


def test_every_service_is_up_with_pid_url_and_memory(local_stack: RunningStack) -> None:
    statuses = local_stack.stack.status()
    assert [s.name for s in statuses] == ["noida", "milvus", "triton"]
    for status in statuses:
        assert status.up, f"{status.name} is down: {status.detail} (log {status.log})"
        assert status.pid is not None
        assert processes.is_alive(status.pid)
        assert status.rss_bytes > 0
        assert all(
            url.startswith(("http://127.0.0.1:", "127.0.0.1:")) for url in status.urls.values()
        )
    env_file = local_stack.stack.env_file.read_text()
    for name, value in local_stack.stack.settings_env().items():
        assert f"{name}={value}" in env_file


def test_settings_point_at_the_session_stack(stack: Settings, local_stack: RunningStack) -> None:
    urls = {s.name: s.urls for s in local_stack.stack.status()}
    assert stack.kafka_bootstrap == urls["noida"]["kafka"]
    assert stack.elasticsearch_url == urls["noida"]["elasticsearch"]
    assert stack.milvus_uri == urls["milvus"]["milvus"]
    assert stack.triton_grpc_url == urls["triton"]["grpc"]
    assert stack.triton_http_url == urls["triton"]["http"]


def test_kafka_produce_consume_round_trip(topic_settings: Settings) -> None:
    topic = topic_settings.topic("raw")
    bootstrap: dict[str, str | int | float | bool] = {
        "bootstrap.servers": topic_settings.kafka_bootstrap
    }
    admin = AdminClient(bootstrap)  # keep a reference: futures die with their client
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=15)
    producer = Producer(bootstrap)
    producer.produce(topic, key=b"p1", value=b'{"product_id": "p1"}')
    assert producer.flush(15) == 0
    consumer = Consumer(
        bootstrap
        | {
            "group.id": topic_settings.app_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(1.0)
            if candidate is not None and candidate.error() is None:
                message = candidate
    finally:
        consumer.close()
    assert message is not None, f"nothing consumed from {topic} within 30 s"
    assert (message.key(), message.value()) == (b"p1", b'{"product_id": "p1"}')


def test_elasticsearch_index_and_search(topic_settings: Settings) -> None:
    index = topic_settings.elasticsearch_index
    es = Elasticsearch(topic_settings.elasticsearch_url, request_timeout=15)
    try:
        es.index(index=index, id="p1", document={"title": "red running shoes"}, refresh=True)
        es.index(index=index, id="p2", document={"title": "blue wool scarf"}, refresh=True)
        hits = es.search(index=index, query={"match": {"title": "shoes"}})["hits"]["hits"]
        assert [hit["_id"] for hit in hits] == ["p1"]
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
        es.close()


def test_milvus_upsert_and_search(topic_settings: Settings) -> None:
    collection = topic_settings.milvus_collection
    client = MilvusClient(uri=topic_settings.milvus_uri, timeout=15)
    try:
        client.create_collection(collection, dimension=4, metric_type="COSINE")
        rows = [
            {"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]},
            {"id": 2, "vector": [0.0, 1.0, 0.0, 0.0]},
        ]
        assert client.upsert(collection, data=rows)["upsert_count"] == 2
        found = client.search(collection, data=[[0.1, 0.9, 0.0, 0.0]], limit=1)
        assert found[0][0]["id"] == 2
    finally:
        client.drop_collection(collection)
        client.close()


def test_triton_serves_every_versioned_model(stack: Settings) -> None:
    expected = servable_models(stack.model_repository)
    entries = repository_index(stack.triton_http_url)
    # One entry per model *version*: a retired categoriser version is UNAVAILABLE by design
    # (tests train and roll back versions), so a model is served when any version is READY.
    ready = {entry["name"] for entry in entries if entry.get("state") == "READY"}
    for name in expected:
        assert name in ready, f"{name} not READY: {[e for e in entries if e['name'] == name]}"


def test_triton_text_encoder_inference(stack: Settings) -> None:
    import tritonclient.grpc as grpcclient

    assert stack.text_encoder_model in servable_models(stack.model_repository), (
        "triton_models/repository/text_encoder has no version directory; export it first"
    )
    client = grpcclient.InferenceServerClient(stack.triton_grpc_url)
    text = np.array([[b"red running shoes"], [b"blue wool scarf"]], dtype=np.object_)
    inputs = [grpcclient.InferInput("TEXT", list(text.shape), "BYTES")]
    inputs[0].set_data_from_numpy(text)
    result = client.infer(stack.text_encoder_model, inputs, client_timeout=60)
    embedding = result.as_numpy("EMBEDDING")
    assert embedding.shape == (2, 384)
    assert np.isfinite(embedding).all()
    assert not np.allclose(embedding[0], embedding[1])


def test_up_twice_starts_no_second_copy(local_stack: RunningStack) -> None:
    before = {s.name: s.pid for s in local_stack.stack.status()}
    processes_before = _processes_mentioning(local_stack.stack.home)
    report = Stack(local_stack.stack.home).up()
    assert report.already_running
    assert {s.name: s.pid for s in report.services} == before
    assert _processes_mentioning(local_stack.stack.home) == processes_before


def test_status_table_shows_state_pid_and_urls_without_credentials(
    local_stack: RunningStack,
) -> None:
    table = format_table(local_stack.stack.status())
    for status in local_stack.stack.status():
        assert f"{status.pid}" in table
        for url in status.urls.values():
            assert url in table
    assert redact("http://elastic:hunter2@es.prod:9200") == "http://***@es.prod:9200"


def test_status_command_prints_urls_but_never_secrets(local_stack: RunningStack) -> None:
    secret = f"secret_{uuid.uuid4().hex}"
    env = os.environ | {
        "CATSTREAM_KAFKA_SASL_PASSWORD": secret,
        "CATSTREAM_ELASTICSEARCH_PASSWORD": secret,
        "CATSTREAM_MILVUS_TOKEN": secret,
        "CATSTREAM_ELASTICSEARCH_URL": f"https://elastic:{secret}@es.example.internal:9200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "catstream.cli", "stack", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for status in local_stack.stack.status():
        assert f" {status.pid} " in result.stdout
        assert all(url in result.stdout for url in status.urls.values())
    assert secret not in result.stdout + result.stderr


# --- lifecycle of small private stacks -------------------------------------------------

FAST = StackTimeouts(noida_s=60, milvus_s=60, triton_s=60, probe_s=2, stop_grace_s=10)


def _processes_mentioning(home: Path) -> set[int]:
    """PIDs whose command line names ``home`` (every service gets a data dir under it)."""
    needle = str(home)
    return {
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and any(needle in arg for arg in processes.cmdline(int(entry.name)))
    }


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    Stack(home).down()  # safety net: a failed assertion must not leak processes
    assert not _processes_mentioning(home)


@pytest.fixture
def listening_socket() -> Iterator[Callable[[int], socket.socket]]:
    sockets: list[socket.socket] = []

    def occupy(port: int = 0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        sockets.append(sock)
        return sock

    yield occupy
    for sock in sockets:
        sock.close()


def test_port_in_use_gets_another_port_then_down_leaves_nothing(
    small_home: Path, listening_socket: Callable[[int], socket.socket]
) -> None:
    busy = listening_socket(0).getsockname()[1]
    # A previous run's state asks for the busy port (as after a reboot).
    small_home.mkdir(parents=True)
    (small_home / "stack.json").write_text(
        '{"version": 1, "milvus_mode": "lite", "services": {"noida": {"name": "noida", '
        f'"ports": {{"kafka": {busy}, "elasticsearch": {busy}}}, "urls": {{}}, "log": "x", '
        '"data_dir": "x"}}}'
    )
    small = Stack(small_home, triton_models=[], timeouts=FAST)
    started = time.monotonic()
    report = small.up()
    assert time.monotonic() - started < 90
    assert not report.already_running
    statuses = {s.name: s for s in report.services}
    assert all(s.up for s in statuses.values())
    assert str(busy) not in statuses["noida"].urls["kafka"]
    pids = [s.pid for s in statuses.values() if s.pid]
    assert len(pids) == 3

    assert sorted(small.down()) == ["milvus", "noida", "triton"]
    for pid in pids:
        assert not processes.is_alive(pid)
        assert not processes.session_members(pid), f"children of {pid} survived"
    assert not _processes_mentioning(small_home)
    assert not small.env_file.exists()
    assert not small.state_file.exists()


def test_stop_and_start_one_service_keeps_its_ports(
    small_home: Path, listening_socket: Callable[[int], socket.socket]
) -> None:
    small = Stack(small_home, triton_models=[], timeouts=FAST)
    small.up()
    triton_before = next(s for s in small.status() if s.name == "triton")
    small.stop_service("triton")
    assert not next(s for s in small.status() if s.name == "triton").up
    assert next(s for s in small.status() if s.name == "noida").up

    triton_after = small.start_service("triton")
    assert triton_after.up
    assert triton_after.urls == triton_before.urls
    assert triton_after.pid != triton_before.pid

    # Elasticsearch alone goes down and comes back on its URL with its data, while
    # Kafka keeps answering: the outage the chaos test needs.
    noida = next(s for s in small.status() if s.name == "noida")
    es = Elasticsearch(noida.urls["elasticsearch"], request_timeout=10)
    es.index(index="kept", id="1", document={"kept": True}, refresh=True)
    small.stop_service("elasticsearch")
    with pytest.raises(ElasticsearchConnectionError):
        Elasticsearch(noida.urls["elasticsearch"], request_timeout=2, max_retries=0).info()
    AdminClient({"bootstrap.servers": noida.urls["kafka"]}).list_topics(timeout=10)
    assert small.start_service("elasticsearch").urls == noida.urls
    assert es.get(index="kept", id="1")["_source"] == {"kept": True}
    assert next(s for s in small.status() if s.name == "noida").pid == noida.pid

    # kill -9 of noida: `up` notices, cleans up what is left of its session and brings
    # noida back on the same URLs, leaving the healthy services alone.
    milvus_pid = next(s.pid for s in small.status() if s.name == "milvus")
    assert noida.pid is not None
    os.kill(noida.pid, signal.SIGKILL)
    # SIGKILL is delivered asynchronously: on a busy machine the process can still look
    # alive for a moment, and `up` would rightly find the stack healthy.
    deadline = time.monotonic() + 10
    while processes.is_alive(noida.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    report = small.up()
    assert not report.already_running
    statuses = {s.name: s for s in report.services}
    assert statuses["noida"].up
    assert statuses["noida"].urls == noida.urls
    assert statuses["milvus"].pid == milvus_pid
    assert not processes.session_members(noida.pid)

    # Someone takes noida's Kafka port while it is stopped: a clear error, not a hang.
    small.stop_service("noida")
    kafka_port = int(
        next(s for s in small.status() if s.name == "noida").urls["kafka"].rsplit(":")[1]
    )
    listening_socket(kafka_port)
    with pytest.raises(StackError, match=rf"port {kafka_port}.*stack down"):
        small.start_service("noida")


def test_service_that_dies_names_its_log_and_nothing_stays_up(small_home: Path) -> None:
    repository = small_home.parent / "broken_repository"
    version = repository / "broken" / "1"
    version.mkdir(parents=True)
    (repository / "broken" / "config.pbtxt").write_text(
        'name: "broken"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    marker = f"model_failed_on_purpose_{uuid.uuid4().hex[:6]}"
    (version / "model.py").write_text(
        f"class TritonPythonModel:\n    def initialize(self, args):\n"
        f"        raise RuntimeError({marker!r})\n"
    )
    broken = Stack(small_home, model_repository=repository, timeouts=FAST)
    with pytest.raises(StackError) as failure:
        broken.up()
    message = str(failure.value)
    assert "triton exited during start-up" in message
    assert str(small_home / "logs" / "triton.log") in message
    assert marker in message  # the log's last lines travel with the error
    assert not _processes_mentioning(small_home)
    assert not broken.env_file.exists()


class SilentMilvus(MilvusService):
    """A milvus that starts and keeps running but never listens: it can never be healthy,
    however fast or slow the machine (the real health probe finds nothing on the port)."""

    def launch(self, ports: Mapping[str, int], data_dir: Path) -> Launch:
        never_listens = "import sys, time; print('silent', sys.argv[1:]); time.sleep(3600)"
        return Launch([sys.executable, "-c", never_listens, str(data_dir)])


def test_service_not_healthy_in_time_names_its_log(small_home: Path) -> None:
    impatient = Stack(small_home, triton_models=[], timeouts=StackTimeouts(milvus_s=3, probe_s=1))
    impatient.services["milvus"] = SilentMilvus("lite", startup_timeout_s=3)
    with pytest.raises(StackError, match=r"milvus was not healthy after 3 s.*milvus\.log"):
        impatient.up()
    assert not _processes_mentioning(small_home)
