"""Whether this process itself is sound, beside the services it talks to.

Two things make a worker unfit to keep running even though Kafka, Triton,
Milvus and Elasticsearch answer:

* a stage's dead-letter guard tripped (``catstream.deadletters``): the stage
  calls ``LIVENESS.stop_process``, which records why, and stops the process
  with SIGTERM so it shuts down cleanly and exits with ``EXIT_GUARD_TRIPPED``;
* a component (a sink thread) is down and being restarted: it reports itself
  with ``LIVENESS.problem`` and clears that once it runs again.

``/health`` (``workers/health.py``) reports both, so a probe sees them.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from catstream.logs import get_logger
from catstream.metrics import DEADLETTER_GUARD_TRIPPED

EXIT_GUARD_TRIPPED = 70  # EX_SOFTWARE: the supervisor restarts the process

log = get_logger(__name__)


def _terminate_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Liveness:
    terminate: Callable[[], None] = _terminate_this_process
    _stopping: dict[str, str] = field(default_factory=dict)
    _problems: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_process(self, component: str, reason: str) -> None:
        """Log why, make ``/health`` say so, and stop the process (exit non-zero)."""
        with self._lock:
            first = not self._stopping
            self._stopping.setdefault(component, reason)
        DEADLETTER_GUARD_TRIPPED.labels(stage=component).set(1)
        log.error("process_stopping", component=component, reason=reason)
        if first:
            self.terminate()

    @property
    def stopping(self) -> dict[str, str]:
        """Component → why it stopped the process (empty while running normally)."""
        with self._lock:
            return dict(self._stopping)

    def problem(self, component: str, reason: str | None) -> None:
        """Report (``reason``) or clear (``None``) a problem of a running component."""
        with self._lock:
            if reason is None:
                self._problems.pop(component, None)
            else:
                self._problems[component] = reason

    @property
    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._problems)

    def reset(self) -> None:
        """Forget everything (tests)."""
        with self._lock:
            self._stopping.clear()
            self._problems.clear()


LIVENESS = Liveness()
