"""noida-db runs as its own session leader, so a stop's SIGTERM reaches the server.

The ``noida-db`` console script is a Python wrapper around the server binary: a SIGTERM
killed the wrapper at once and orphaned the server, which then had only the few seconds
left for orphans before SIGKILL, and lost the records it had acknowledged last.
"""

from __future__ import annotations

from pathlib import Path

from deploy.services.noida import NoidaService


def test_the_stack_launches_the_noida_server_not_its_python_wrapper(tmp_path: Path) -> None:
    launch = NoidaService().launch({"kafka": 1, "elasticsearch": 2}, tmp_path)
    executable = Path(launch.command[0])
    assert executable.read_bytes()[:4] == b"\x7fELF", f"{executable} is not the server binary"
    assert launch.command[1:3] == ["start", "--only"]


def test_one_api_stops_and_starts_through_the_same_server(tmp_path: Path) -> None:
    command = NoidaService().api_command("stop", "elasticsearch", tmp_path)
    assert Path(command[0]).read_bytes()[:4] == b"\x7fELF"
    assert command[1:] == ["stop", "elasticsearch", "--data-dir", str(tmp_path)]
