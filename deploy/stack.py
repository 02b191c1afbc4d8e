"""The local stack of real services: start, health-check, inspect and stop them by PID.

``Stack(home).up()`` starts noida-db (Kafka + Elasticsearch APIs), tritonserver
and Milvus on 127.0.0.1 on free ports, waits until each answers its real
protocol, then writes ``<home>/stack.env`` (the URLs, read by every command)
and ``<home>/stack.json`` (PIDs, ports, logs). It is idempotent, never leaves
the stack half-up, and ``down()`` stops by PID exactly what it started.
Logs go to ``<home>/logs/<service>.log``, data to ``<home>/data/<service>/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from catstream.logs import get_logger
from catstream.settings import Settings, load_settings
from deploy.services import processes
from deploy.services.milvus import MilvusMode, MilvusService
from deploy.services.noida import NoidaService
from deploy.services.service import Service, ServiceUnhealthy, StackError
from deploy.services.state import (
    ServiceState,
    StackState,
    load_state,
    remove,
    save_state,
    write_env_file,
)
from deploy.services.triton import TritonService, stub_shm_regions

__all__ = ["Stack", "StackError", "StackTimeouts", "down", "status", "up"]

log = get_logger(__name__)

# Log lines that mean "someone took the port between our probe and the bind".
_PORT_CONFLICT_MARKERS = ("already in use", "address in use", "failed to bind", "errno 98")
_PORT_RETRIES = 2


@dataclass(frozen=True)
class StackTimeouts:
    """Seconds to wait at most (ceilings, not sleeps). Triton loads MiniLM once for the text
    encoder and once per loaded categoriser version (served + previous), plus the image
    encoder: 20–60 s each on 2 cores, over 4 minutes when the machine is busy."""

    noida_s: float = 60.0
    triton_s: float = 480.0
    milvus_s: float = 60.0
    probe_s: float = 3.0
    stop_grace_s: float = 15.0


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` reports for one service (never a secret)."""

    name: str
    up: bool
    pid: int | None
    urls: dict[str, str]
    log: str
    rss_bytes: int
    detail: str = ""


@dataclass(frozen=True)
class UpReport:
    already_running: bool
    seconds: float
    services: list[ServiceStatus] = field(default_factory=list)


class Stack:
    """The local stack rooted at ``home`` (default: ``settings.home``)."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        settings: Settings | None = None,
        milvus_mode: MilvusMode | None = None,
        model_repository: Path | None = None,
        triton_models: Sequence[str] | None = None,
        timeouts: StackTimeouts | None = None,
    ) -> None:
        settings = settings or load_settings()
        self.home = Path(home if home is not None else settings.home).resolve()
        self.timeouts = timeouts or StackTimeouts()
        previous = load_state(self.state_file)
        self.milvus_mode: MilvusMode = milvus_mode or (
            "standalone" if previous and previous.milvus_mode == "standalone" else "lite"
        )
        self.services: dict[str, Service] = {
            "noida": NoidaService(self.timeouts.noida_s),
            "milvus": MilvusService(self.milvus_mode, self.timeouts.milvus_s),
            "triton": TritonService(
                model_repository or settings.model_repository,
                triton_models,
                self.timeouts.triton_s,
            ),
        }
        # Popen handles of what this process spawned, so stopped children are reaped.
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # --- files ------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def env_file(self) -> Path:
        return self.home / "stack.env"

    def log_file(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        return self.home / "data" / name

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One stack command at a time per home (two `up`s must not race)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- public API -------------------------------------------------------------
    def up(self) -> UpReport:
        """Start whatever is not already up and healthy; on any failure stop everything."""
        started = time.monotonic()
        with self._locked():
            state = load_state(self.state_file) or StackState(milvus_mode=self.milvus_mode)
            if state.milvus_mode != self.milvus_mode:
                self._stop_services(state, list(state.services))
                state = StackState(milvus_mode=self.milvus_mode)
            healthy = [n for n in self.services if self._is_healthy(state.services.get(n))]
            if len(healthy) == len(self.services):
                log.info("stack_already_up", home=str(self.home))
                return UpReport(True, 0.0, self._statuses(state))
            missing = [name for name in self.services if name not in healthy]
            self._stop_services(state, missing)  # leftovers that are alive but unhealthy
            try:
                self._start_services(state, missing)
            except StackError:
                self._stop_services(state, list(state.services))
                remove(self.env_file, self.state_file)
                raise
            state.up_seconds = round(time.monotonic() - started, 2)
            self._commit(state)
            log.info("stack_up", home=str(self.home), seconds=state.up_seconds)
            return UpReport(False, state.up_seconds, self._statuses(state))

    def down(self) -> list[str]:
        """Stop every service this stack started; returns their names."""
        with self._locked():
            self._stop_demo_worker()
            state = load_state(self.state_file)
            if state is None:
                remove(self.env_file)
                return []
            names = list(state.services)
            self._stop_services(state, names)
            remove(self.env_file, self.state_file)
            log.info("stack_down", home=str(self.home), services=names)
            return names

    def _stop_demo_worker(self) -> None:
        """The worker ``catstream demo`` leaves running depends on the stack: stop it first."""
        pid_file = self.home / "demo-worker.pid"
        if not pid_file.exists():
            return
        try:
            os.killpg(int(pid_file.read_text().strip()), signal.SIGTERM)
            log.info("demo_worker_stopped")
        except (ProcessLookupError, ValueError, PermissionError):
            pass
        remove(pid_file)

    def status(self) -> list[ServiceStatus]:
        state = load_state(self.state_file) or StackState()
        return self._statuses(state)

    def stop_service(self, name: str) -> None:
        """Stop one service, keeping its ports so ``start_service`` brings it back there.

        ``name`` may also be one API of a service (``elasticsearch``, ``kafka``): that API
        stops and the process keeps serving the others."""
        if (owner := self._api_owner(name)) is not None:
            self._control_api(owner, "stop", name)
            return
        self._known(name)
        with self._locked():
            state = self._require_state()
            self._stop_services(state, [name])
            save_state(self.state_file, state)

    def start_service(self, name: str) -> ServiceStatus:
        """(Re)start one service (or one API of it) on the ports it had; the rest of the
        stack is untouched."""
        if (owner := self._api_owner(name)) is not None:
            return self._control_api(owner, "start", name)
        self._known(name)
        with self._locked():
            state = self._require_state()
            if not self._is_healthy(state.services.get(name)):
                self._stop_services(state, [name])
                try:
                    self._start_services(state, [name], reuse_ports=True)
                except StackError:
                    self._stop_services(state, [name])
                    save_state(self.state_file, state)
                    raise
                self._commit(state)
            return self._status_of(state.services[name])

    def settings_env(self) -> dict[str, str]:
        """The ``CATSTREAM_*`` URL variables of the running stack (as in stack.env)."""
        state = self._require_state()
        variables: dict[str, str] = {}
        for name, svc in state.services.items():
            variables.update(self.services[name].settings_env(svc.urls))
        return variables

    # --- starting -----------------------------------------------------------------
    def _start_services(
        self, state: StackState, names: Sequence[str], reuse_ports: bool = False
    ) -> None:
        taken = {p for svc in state.services.values() for p in svc.ports.values()}
        pending: dict[str, tuple[float, int, int]] = {}  # name -> deadline, log offset, retries
        for name in names:
            previous = state.services.get(name)
            ports = self._choose_ports(name, previous, taken, strict=reuse_ports)
            taken.update(ports.values())
            offset = self._spawn(state, name, ports)
            pending[name] = (time.monotonic() + self.services[name].startup_timeout_s, offset, 0)
        while pending:
            for name in list(pending):
                deadline, offset, retries = pending[name]
                outcome = self._poll_startup(state.services[name], deadline, offset)
                if outcome == "healthy":
                    del pending[name]
                elif outcome == "port_conflict" and retries < _PORT_RETRIES and not reuse_ports:
                    ports = self._choose_ports(name, None, taken, strict=False)
                    taken.update(ports.values())
                    offset = self._spawn(state, name, ports)
                    timeout = self.services[name].startup_timeout_s
                    pending[name] = (time.monotonic() + timeout, offset, retries + 1)
                elif outcome != "starting":
                    raise StackError(self._failure_message(state.services[name], outcome, offset))
            if pending:
                time.sleep(0.5)

    def _choose_ports(
        self, name: str, previous: ServiceState | None, taken: set[int], strict: bool
    ) -> dict[str, int]:
        """Previous ports when still free (stable URLs across restarts), else fresh ones."""
        ports: dict[str, int] = {}
        for port_name in self.services[name].port_names:
            old = previous.ports.get(port_name) if previous else None
            # A just-stopped server's socket can take a moment to close on a busy machine:
            # wait for it rather than move the service to new URLs its clients don't know.
            if old is not None and _port_frees_up(old, wait_s=10.0 if strict else 5.0):
                ports[port_name] = old
            elif strict and old is not None:
                raise StackError(
                    f"{name}: port {old} ({port_name}) is now used by another process, so "
                    f"{name} cannot come back on its old URL; run `catstream stack down` "
                    "and `catstream stack up` to pick new ports"
                )
            else:
                ports[port_name] = processes.free_port(avoid=taken | set(ports.values()))
        return ports

    def _spawn(self, state: StackState, name: str, ports: Mapping[str, int]) -> int:
        service = self.services[name]
        data_dir = self.data_dir(name)
        data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_file(name)
        launch = service.launch(ports, data_dir)
        offset = log_file.stat().st_size if log_file.exists() else 0
        child = processes.spawn(launch.command, log_file, launch.env, launch.cwd)
        self._children[name] = child
        stat = processes.read_stat(child.pid)
        state.services[name] = ServiceState(
            name=name,
            ports=dict(ports),
            urls=service.urls(ports),
            log=str(log_file),
            data_dir=str(data_dir),
            pid=child.pid,
            start_ticks=stat.start_ticks if stat else None,
            started_at=time.time(),
            command=launch.command,
        )
        # Record the PID at once, so even a crash of this process leaves it stoppable.
        save_state(self.state_file, state)
        log.info("service_starting", service=name, pid=child.pid, log=str(log_file))
        return offset

    def _poll_startup(self, svc: ServiceState, deadline: float, offset: int) -> str:
        """``healthy`` | ``starting`` | ``port_conflict`` | ``exited`` | ``timeout: <why>``."""
        assert svc.pid is not None
        child = self._children.get(svc.name)
        if child is not None:
            child.poll()
        if not processes.is_alive(svc.pid, svc.start_ticks):
            if any(m in _log_since(Path(svc.log), offset).lower() for m in _PORT_CONFLICT_MARKERS):
                return "port_conflict"
            return "exited"
        try:
            self.services[svc.name].check_health(svc.urls, self.timeouts.probe_s)
        except ServiceUnhealthy as exc:
            return f"timeout: {exc}" if time.monotonic() >= deadline else "starting"
        log.info("service_healthy", service=svc.name, pid=svc.pid)
        return "healthy"

    def _failure_message(self, svc: ServiceState, outcome: str, offset: int) -> str:
        timeout = self.services[svc.name].startup_timeout_s
        if outcome == "exited":
            what = f"{svc.name} exited during start-up"
        elif outcome == "port_conflict":
            what = f"{svc.name} could not bind its ports {svc.ports} (in use by another process)"
        else:
            what = f"{svc.name} was not healthy after {timeout:.0f} s ({outcome[9:]})"
        tail = "\n".join(_log_since(Path(svc.log), offset).splitlines()[-15:])
        return (
            f"{what}; the stack was stopped. Read its log {svc.log} for the cause "
            f"(last lines below), fix it, then run `catstream stack up` again.\n{tail}"
        )

    # --- stopping -----------------------------------------------------------------
    def _stop_services(self, state: StackState, names: Sequence[str]) -> None:
        for name in names:
            svc = state.services.get(name)
            if svc is None or svc.pid is None:
                continue
            members = processes.session_members(svc.pid)
            shm_files = stub_shm_regions([processes.cmdline(m.pid) for m in members])
            outcome = processes.stop_session(
                svc.pid, svc.start_ticks, self.timeouts.stop_grace_s, self._children.pop(name, None)
            )
            if outcome == "killed":
                log.warning(
                    "service_killed",
                    service=name,
                    pid=svc.pid,
                    detail=f"{name} did not stop within {self.timeouts.stop_grace_s:.0f} s of "
                    "SIGTERM and was SIGKILLed, so data it had not saved may be lost; on a busy "
                    "machine stop the catstream workers first, then the stack",
                )
            elif outcome == "survived":
                log.warning("service_survived_sigkill", service=name, pid=svc.pid)
            for shm in shm_files:
                shm.unlink(missing_ok=True)
            log.info("service_stopped", service=name, pid=svc.pid)
            svc.pid = None
            svc.start_ticks = None
            svc.started_at = None

    # --- inspecting ---------------------------------------------------------------
    def _is_healthy(self, svc: ServiceState | None) -> bool:
        if svc is None or svc.pid is None or not processes.is_alive(svc.pid, svc.start_ticks):
            return False
        try:
            self.services[svc.name].check_health(svc.urls, self.timeouts.probe_s)
        except ServiceUnhealthy:
            return False
        return True

    def _status_of(self, svc: ServiceState) -> ServiceStatus:
        alive = svc.pid is not None and processes.is_alive(svc.pid, svc.start_ticks)
        detail = ""
        if alive:
            try:
                self.services[svc.name].check_health(svc.urls, self.timeouts.probe_s)
            except ServiceUnhealthy as exc:
                detail = str(exc)
        else:
            detail = "not running"
        rss = processes.session_rss_bytes(svc.pid) if alive and svc.pid else 0
        return ServiceStatus(
            name=svc.name,
            up=alive and not detail,
            pid=svc.pid if alive else None,
            urls=dict(svc.urls),
            log=svc.log,
            rss_bytes=rss,
            detail=detail,
        )

    def _statuses(self, state: StackState) -> list[ServiceStatus]:
        statuses = []
        for name in self.services:
            svc = state.services.get(name)
            if svc is None:
                statuses.append(
                    ServiceStatus(name, False, None, {}, str(self.log_file(name)), 0, "not started")
                )
            else:
                statuses.append(self._status_of(svc))
        return statuses

    def _commit(self, state: StackState) -> None:
        save_state(self.state_file, state)
        variables: dict[str, str] = {}
        for name, svc in state.services.items():
            variables.update(self.services[name].settings_env(svc.urls))
        write_env_file(self.env_file, variables)

    def _require_state(self) -> StackState:
        state = load_state(self.state_file)
        if state is None:
            raise StackError(f"no stack is running under {self.home}; run `catstream stack up`")
        return state

    def _known(self, name: str) -> None:
        if name not in self.services:
            apis = [api for service in self.services.values() for api in service.apis]
            raise StackError(
                f"unknown service {name!r}; expected one of {', '.join([*self.services, *apis])}"
            )

    def _api_owner(self, api: str) -> str | None:
        return next((n for n, s in self.services.items() if api in s.apis), None)

    def _control_api(self, owner: str, action: str, api: str) -> ServiceStatus:
        """``noida-db stop|start <api>`` on the running process, then (start) wait until
        the whole service answers again."""
        service = self.services[owner]
        done_word = {"stop": "stopped", "start": "started"}[action]
        with self._locked():
            state = self._require_state()
            svc = state.services.get(owner)
            if svc is None or not processes.is_alive(svc.pid or -1, svc.start_ticks):
                raise StackError(
                    f"{owner} is not running, so its {api} API cannot be {done_word}; "
                    f"run `catstream stack start {owner}`"
                )
            command = service.api_command(action, api, self.data_dir(owner))
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise StackError(
                    f"`{' '.join(command)}` failed ({done.returncode}): "
                    f"{(done.stderr or done.stdout).strip()[-300:]}; see {svc.log}"
                )
            log.info(f"api_{done_word}", service=owner, api=api)
            if action == "start":
                self._wait_api_healthy(svc, time.monotonic() + service.startup_timeout_s)
            return self._status_of(svc)

    def _wait_api_healthy(self, svc: ServiceState, deadline: float) -> None:
        while True:
            try:
                self.services[svc.name].check_health(svc.urls, self.timeouts.probe_s)
                return
            except ServiceUnhealthy as exc:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"{svc.name} did not answer again after starting an API: {exc}; "
                        f"see {svc.log}"
                    ) from exc
            time.sleep(0.5)


def _port_frees_up(port: int, wait_s: float) -> bool:
    """Whether ``port`` is free, waiting up to ``wait_s`` for a just-stopped server's socket."""
    deadline = time.monotonic() + wait_s
    while not processes.port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def up(home: Path | str | None = None, **options: object) -> UpReport:
    """Start the stack under ``home`` (see ``Stack`` for options)."""
    return Stack(home, **options).up()  # type: ignore[arg-type]


def down(home: Path | str | None = None) -> list[str]:
    return Stack(home).down()


def status(home: Path | str | None = None) -> list[ServiceStatus]:
    return Stack(home).status()
