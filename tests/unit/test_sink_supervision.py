"""A sink thread that dies is restarted, and /health says so meanwhile."""

from __future__ import annotations

import asyncio
import threading

from catstream.backoff import Backoff
from catstream.liveness import Liveness
from catstream.settings import Settings
from workers.health import process_check, run_checks
from workers.worker_services import supervised_sink


def test_a_dead_sink_is_restarted_and_reported_until_it_runs_again() -> None:
    # Before: the thread died with the exception and nothing restarted it; /health said ready.
    liveness = Liveness(terminate=lambda: None)
    runs: list[int] = []
    seen_while_down: list[dict[str, str]] = []

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            seen_while_down.append(liveness.problems)  # what /health sees during the back-off
            return super().wait(timeout)

    stop = Stop()

    def run(settings: Settings, stop_event: threading.Event) -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise ConnectionError("milvus client broke")
        stop_event.set()  # the second run is healthy until the worker stops

    supervised_sink(
        "milvus-sink", run, Settings(), stop, liveness=liveness, backoff=Backoff(0.01, 0.01)
    )
    assert runs == [0, 1]
    (problems,) = seen_while_down
    assert "sink thread died (ConnectionError: milvus client broke)" in problems["milvus-sink"]
    assert liveness.problems == {}


def test_health_is_not_ready_while_a_sink_is_down_or_the_process_is_stopping() -> None:
    liveness = Liveness(terminate=lambda: None)
    checks = {"process": process_check(liveness)}
    assert asyncio.run(run_checks(checks))["process"]["ok"]
    liveness.problem("es-sink", "sink thread died (boom); restarting in 1 s")
    result = asyncio.run(run_checks(checks))["process"]
    assert not result["ok"]
    assert "es-sink: sink thread died" in result["error"]
    liveness.problem("es-sink", None)
    liveness.stop_process("normalise", "100 messages in a row failed with ProcessingBug")
    result = asyncio.run(run_checks(checks))["process"]
    assert not result["ok"]
    assert "stopping: normalise: 100 messages" in result["error"]


def test_a_sink_that_stopped_the_process_is_not_restarted() -> None:
    liveness = Liveness(terminate=lambda: None)
    runs: list[int] = []

    def run(settings: Settings, stop_event: threading.Event) -> None:
        runs.append(1)
        liveness.stop_process("milvus", "guard tripped")

    supervised_sink("milvus-sink", run, Settings(), threading.Event(), liveness=liveness)
    assert runs == [1]


def test_a_sink_that_returns_on_its_own_is_restarted() -> None:
    liveness = Liveness(terminate=lambda: None)
    stop = threading.Event()
    runs: list[int] = []

    def run(settings: Settings, stop_event: threading.Event) -> None:
        runs.append(1)
        if len(runs) == 2:
            stop_event.set()

    supervised_sink(
        "es-sink", run, Settings(), stop, liveness=liveness, backoff=Backoff(0.01, 0.01)
    )
    assert len(runs) == 2
