"""What the stack needs to know about one service: how to launch it and how to probe it."""

from __future__ import annotations

import shutil
import socket
import sys
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LOCALHOST = "127.0.0.1"


class StackError(RuntimeError):
    """The local stack could not do what was asked; the message says what to do."""


class ServiceUnhealthy(Exception):
    """A health probe failed; the message says which protocol and why."""


@dataclass(frozen=True)
class Launch:
    """A command line ready for ``processes.spawn``."""

    command: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


class Service(ABC):
    """One long-running process of the local stack."""

    name: str
    port_names: tuple[str, ...]
    startup_timeout_s: float = 60.0
    # APIs the running process can stop and start on their own (noida: kafka, elasticsearch).
    apis: tuple[str, ...] = ()

    @abstractmethod
    def launch(self, ports: Mapping[str, int], data_dir: Path) -> Launch:
        """The command that serves on ``ports`` with its data in ``data_dir``."""

    @abstractmethod
    def urls(self, ports: Mapping[str, int]) -> dict[str, str]:
        """Endpoint role → URL, e.g. ``{"kafka": "127.0.0.1:40123"}``."""

    @abstractmethod
    def settings_env(self, urls: Mapping[str, str]) -> dict[str, str]:
        """``CATSTREAM_*`` variables pointing catstream at this service."""

    @abstractmethod
    def check_health(self, urls: Mapping[str, str], timeout_s: float) -> None:
        """Raise ``ServiceUnhealthy`` unless the service answers its real protocol."""

    def api_command(self, action: str, api: str, data_dir: Path) -> list[str]:
        """The command that stops or starts one API of a running multi-API process."""
        raise StackError(f"{self.name} cannot stop or start {api!r} on its own")


def venv_bin() -> Path:
    """The directory of the running interpreter: the venv's ``bin``."""
    return Path(sys.executable).parent


def find_executable(name: str) -> Path | None:
    """``name`` from the venv first (pinned versions), else from PATH."""
    candidate = venv_bin() / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def tcp_open(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def http_status(url: str, timeout_s: float, method: str = "GET") -> int:
    """HTTP status code of ``url``; raises ``ServiceUnhealthy`` when nothing answers."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ServiceUnhealthy(f"{url} did not answer: {exc}") from exc


def host_port(address: str) -> tuple[str, int]:
    """``"http://h:p/x"`` or ``"h:p"`` → ``(h, p)``."""
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)
