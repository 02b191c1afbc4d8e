"""What the stack remembers between commands: ``<home>/stack.json`` and ``<home>/stack.env``.

``stack.json`` holds PIDs, ports, URLs and log files (for ``down``/``status``);
``stack.env`` holds only the ``CATSTREAM_*`` URLs, read by
``catstream.settings.load_settings`` under the real environment. Neither file
ever holds a secret: the local services run without auth.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


@dataclass
class ServiceState:
    """One service as started by the stack."""

    name: str
    ports: dict[str, int]
    urls: dict[str, str]
    log: str
    data_dir: str
    pid: int | None = None
    start_ticks: int | None = None
    started_at: float | None = None
    command: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ServiceState:
        return cls(
            name=str(raw["name"]),
            ports={k: int(v) for k, v in raw["ports"].items()},
            urls={k: str(v) for k, v in raw["urls"].items()},
            log=str(raw["log"]),
            data_dir=str(raw["data_dir"]),
            pid=raw.get("pid"),
            start_ticks=raw.get("start_ticks"),
            started_at=raw.get("started_at"),
            command=list(raw.get("command", [])),
        )


@dataclass
class StackState:
    """The whole stack: mode and services by name."""

    milvus_mode: str = "lite"
    services: dict[str, ServiceState] = field(default_factory=dict)
    up_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "milvus_mode": self.milvus_mode,
            "up_seconds": self.up_seconds,
            "services": {name: asdict(svc) for name, svc in self.services.items()},
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StackState:
        return cls(
            milvus_mode=str(raw.get("milvus_mode", "lite")),
            up_seconds=raw.get("up_seconds"),
            services={
                name: ServiceState.from_json(svc) for name, svc in raw.get("services", {}).items()
            },
        )


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_state(path: Path) -> StackState | None:
    if not path.exists():
        return None
    try:
        return StackState.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None  # a corrupt state file means "nothing we can manage"


def save_state(path: Path, state: StackState) -> None:
    _write_atomically(path, json.dumps(state.to_json(), indent=2) + "\n")


def write_env_file(path: Path, variables: dict[str, str]) -> None:
    lines = ["# written by `catstream stack up`; exported variables override these"]
    lines += [f"{name}={value}" for name, value in sorted(variables.items())]
    _write_atomically(path, "\n".join(lines) + "\n")


def remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
