"""Fixtures every unit test gets.

``stops``: ``LIVENESS.stop_process`` records ``"stop"`` instead of sending this
process SIGTERM. A unit test that drives an agent or a sink into a fatal path
would otherwise kill the pytest process (under xdist: a crashed worker and a
hung run), so it is on for every unit test; a test asserts on it by name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from catstream.liveness import LIVENESS


@pytest.fixture(autouse=True)
def stops() -> Iterator[list[str]]:
    calls: list[str] = []
    terminate = LIVENESS.terminate
    LIVENESS.terminate = lambda: calls.append("stop")
    yield calls
    LIVENESS.terminate = terminate
    LIVENESS.reset()
