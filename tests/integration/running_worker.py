"""A real ``catstream worker`` process for integration tests, and topic readers.

The worker runs as a child process (as in production) so tests can SIGTERM or
SIGKILL it mid-stream; its log goes to a file that is printed when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from catstream.kafka_config import librdkafka_config
from catstream.settings import Settings
from streams.topic_records import Record, read_topic

__all__ = [
    "Record",
    "WorkerProcess",
    "dead_letters",
    "partition_owners",
    "read_topic",
    "wait_until",
]


class WorkerProcess:
    """``catstream worker`` with the given settings, started and stopped on demand."""

    def __init__(
        self, settings: Settings, log_path: Path, *args: str, command: str = "worker"
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.args = list(args)
        self.command = command  # or "sink"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, **self.settings.as_env(), "CATSTREAM_LOG_FORMAT": "json"}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "catstream.cli", self.command, *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, every_s: float = 2.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def dead_letters(settings: Settings, expected: int) -> list[dict[str, Any]]:
    """Dead letters read from the beginning until ``expected`` arrived (or 20 s passed)."""
    consumer = Consumer(
        librdkafka_config(
            settings, **{"group.id": f"dl-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([settings.topic("deadletter")])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(found) < expected and time.monotonic() < deadline:
        record = consumer.poll(0.5)
        value = record.value() if record is not None and record.error() is None else None
        if value:
            found.append(json.loads(value))
    consumer.close()
    return found


def partition_owners(settings: Settings, group: str, topic: str) -> dict[str, set[int]]:
    """``{group.instance.id: partitions of topic}`` in ``group``'s current assignment.

    Empty while the group rebalances (members hold no assignment until it completes).
    """
    admin = AdminClient(librdkafka_config(settings))
    description = admin.describe_consumer_groups([group])[group].result(30)
    return {
        str(member.group_instance_id or member.member_id): {
            tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic
        }
        for member in description.members
    }
