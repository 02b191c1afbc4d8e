"""Processes the local stack starts: free ports, spawning, liveness, stopping, memory.

Every service runs in its own session (``start_new_session``), so its PID is
also its process-group and session id. Stopping a service signals the whole
session: tritonserver's python-backend stubs and milvus' helpers die with it.
Liveness compares the kernel start time recorded at spawn, so a PID reused by
an unrelated process is never mistaken for ours (and never killed).
Linux only: reads ``/proc`` directly (psutil is not a dependency).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

StopOutcome = Literal["stopped", "killed", "survived"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcStat:
    """The few fields of ``/proc/<pid>/stat`` the stack needs."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start_ticks: int
    rss_bytes: int


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` parsed, or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        start_ticks=int(rest[19]),
        rss_bytes=int(rest[21]) * _PAGE_SIZE,
    )


def is_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start_ticks``."""
    stat = read_stat(pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return start_ticks is None or stat.start_ticks == start_ticks


def session_members(session_id: int) -> list[ProcStat]:
    """Every live process of a session (a service and all it spawned)."""
    members: list[ProcStat] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is None or stat.state in ("Z", "X"):
            continue
        if stat.session == session_id or stat.pgrp == session_id:
            members.append(stat)
    return members


def session_rss_bytes(session_id: int) -> int:
    """Resident memory of a service: the sum over its whole session."""
    return sum(member.rss_bytes for member in session_members(session_id))


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def free_port(host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    avoided = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoided:
            return port
    raise RuntimeError("could not find a free TCP port; check `ss -ltn` for port exhaustion")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on ``port`` now.

    SO_REUSEADDR as servers set it: a port whose old connections linger in
    TIME_WAIT after a stop counts as free, one with a listener does not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def spawn(
    command: Sequence[str],
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session, stdout and stderr appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )


def _signal_members(session_id: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session_id, sig)
    # Members that moved to another process group are still in the session.
    for member in session_members(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member.pid, sig)


def _wait_gone(session_id: int, timeout_s: float, child: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if child is not None:
            child.poll()  # reap our own child so it does not linger as a zombie
        if not session_members(session_id):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop_session(
    pid: int,
    start_ticks: int | None,
    grace_s: float = 15.0,
    child: subprocess.Popen[bytes] | None = None,
) -> StopOutcome:
    """SIGTERM a service's whole session, wait ``grace_s``, then SIGKILL what is left.

    Returns ``killed`` when SIGKILL was needed (a server may lose unsaved data then) and
    ``survived`` when something outlived even SIGKILL (should not happen). Does nothing
    when ``pid`` is no longer the process we started.
    """
    stat = read_stat(pid)
    if stat is not None and start_ticks is not None and stat.start_ticks != start_ticks:
        return "stopped"  # the PID now belongs to someone else: leave it alone
    if not session_members(pid):
        if child is not None:
            child.poll()
        return "stopped"
    # The leader first, alone: tritonserver then unloads its models and ends its
    # own stubs cleanly (signalling the stubs too would make it wait for them).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    _wait_leader(pid, start_ticks, grace_s, child)
    # Then whatever the leader left behind in its session.
    _signal_members(pid, signal.SIGTERM)
    if _wait_gone(pid, min(grace_s, 3.0), child):
        return "stopped"
    _signal_members(pid, signal.SIGKILL)
    return "killed" if _wait_gone(pid, 5.0, child) else "survived"


def _wait_leader(
    pid: int, start_ticks: int | None, timeout_s: float, child: subprocess.Popen[bytes] | None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        if not is_alive(pid, start_ticks):
            return
        time.sleep(0.1)
