"""tritonserver from nvidia-pytriton: python backend on CPU, serving ``triton_models/repository``.

The python backend runs each model in a ``triton_python_backend_stub`` process
with an *embedded, isolated* interpreter: it ignores ``PYTHONPATH``. It finds
its ``sys.prefix`` by searching ``PATH`` for ``python3``, so the venv's ``bin``
must come first on ``PATH`` — that is what makes the venv's site-packages (and
the editable catstream install) importable from ``model.py``. It also needs
libpython (``sysconfig`` LIBDIR) and ``nvidia_pytriton.libs`` on
``LD_LIBRARY_PATH``. ``triton_environment()`` builds all of that; anyone who
starts a tritonserver for this project should use it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from catstream.settings import PROJECT_ROOT
from deploy.model_repository import sync_model_repository
from deploy.services.service import (
    LOCALHOST,
    Launch,
    Service,
    ServiceUnhealthy,
    StackError,
    http_status,
    venv_bin,
)

DEFAULT_SHM_BYTES = 8 * 1024 * 1024


def pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise StackError("nvidia-pytriton is not installed; run `.venv/bin/pip install -e .`")
    return Path(spec.origin).parent


def tritonserver_binary() -> Path:
    return pytriton_dir() / "tritonserver" / "bin" / "tritonserver"


def triton_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its python-backend stubs (see module docstring)."""
    env = dict(os.environ if base is None else base)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    libdirs = [
        str(sysconfig.get_config_var("LIBDIR")),
        # The wheel's bundled libraries sit beside the pytriton package.
        str(pytriton_dir().parent / "nvidia_pytriton.libs"),
    ]
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libdirs)
    env["PATH"] = ":".join([str(venv_bin()), env.get("PATH", "/usr/bin:/bin")])
    pythonpath = [str(PROJECT_ROOT), str(site_packages)]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = ":".join(pythonpath)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    # Each model sets its own torch threads; keep BLAS pools from oversubscribing 2 cores.
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


def prepare_backend_directory(target: Path) -> Path:
    """A ``--backend-directory`` with the python backend and the stub for this Python.

    pytriton ships stubs per Python version; the backend looks for
    ``triton_python_backend_stub`` beside ``libtriton_python.so``. The venv is
    left untouched: the copy lives under the stack's home.
    """
    source = pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise StackError(f"nvidia-pytriton has no python backend stub for Python {version}")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (source / "backends" / "python").iterdir():
        if item.is_file():
            _copy_if_changed(item, python_dir / item.name)
    _copy_if_changed(stub, python_dir / stub.name)
    return target


def _copy_if_changed(source: Path, target: Path) -> None:
    if target.exists() and target.stat().st_size == source.stat().st_size:
        return
    shutil.copy2(source, target)


def servable_models(repository: Path) -> list[str]:
    """Models with a ``config.pbtxt`` and at least one numbered version directory.

    A model without a version (e.g. the categoriser before its first training)
    is skipped rather than failing the whole server.
    """
    if not repository.is_dir():
        return []
    names = []
    for model_dir in sorted(repository.iterdir()):
        if not (model_dir / "config.pbtxt").is_file():
            continue
        if any(child.is_dir() and child.name.isdigit() for child in model_dir.iterdir()):
            names.append(model_dir.name)
    return names


class TritonService(Service):
    """tritonserver with ``--model-control-mode=explicit``, loading every servable model."""

    name = "triton"
    port_names = ("http", "grpc", "metrics")

    def __init__(
        self,
        model_repository: Path,
        models: Sequence[str] | None = None,
        startup_timeout_s: float = 180.0,
        shm_bytes: int = DEFAULT_SHM_BYTES,
        config_name: str | None = None,
    ) -> None:
        self.model_repository = model_repository
        # "gpu" serves each model's configs/gpu.pbtxt (KIND_GPU instances) instead of config.pbtxt.
        self.config_name = config_name
        self.models = list(models) if models is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.shm_bytes = shm_bytes

    def models_to_load(self) -> list[str]:
        return self.models if self.models is not None else servable_models(self.model_repository)

    def launch(self, ports: Mapping[str, int], data_dir: Path) -> Launch:
        sync_model_repository(self.model_repository)
        if not self.model_repository.is_dir():
            raise StackError(
                f"Triton model repository {self.model_repository} does not exist; "
                "set CATSTREAM_MODEL_REPOSITORY or create triton_models/repository"
            )
        backends = prepare_backend_directory(data_dir / "backends")
        command = [
            str(tritonserver_binary()),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backends}",
            f"--backend-config=python,shm-default-byte-size={self.shm_bytes}",
            f"--http-address={LOCALHOST}",
            f"--http-port={ports['http']}",
            f"--grpc-address={LOCALHOST}",
            f"--grpc-port={ports['grpc']}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={LOCALHOST}",
            f"--metrics-port={ports['metrics']}",
            # Stop fast: in-flight requests get 3 s, not the default 30. (Triton waits
            # this long for the python stubs to exit even when they have finalized.)
            "--exit-timeout-secs=3",
        ]
        if self.config_name:
            command.append(f"--model-config-name={self.config_name}")
        command += [f"--load-model={model}" for model in self.models_to_load()]
        return Launch(command=command, env=triton_environment(), cwd=data_dir)

    def urls(self, ports: Mapping[str, int]) -> dict[str, str]:
        return {
            "http": f"http://{LOCALHOST}:{ports['http']}",
            "grpc": f"{LOCALHOST}:{ports['grpc']}",
            "metrics": f"http://{LOCALHOST}:{ports['metrics']}/metrics",
        }

    def settings_env(self, urls: Mapping[str, str]) -> dict[str, str]:
        return {
            "CATSTREAM_TRITON_GRPC_URL": urls["grpc"],
            "CATSTREAM_TRITON_HTTP_URL": urls["http"],
            "CATSTREAM_MODEL_REPOSITORY": str(self.model_repository),
        }

    def check_health(self, urls: Mapping[str, str], timeout_s: float) -> None:
        status = http_status(urls["http"] + "/v2/health/ready", timeout_s)
        if status != 200:
            raise ServiceUnhealthy(f"Triton /v2/health/ready answered HTTP {status}")


def repository_index(http_url: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Triton's model repository index: name, version and state of every model."""
    request = urllib.request.Request(
        http_url.rstrip("/") + "/v2/repository/index", data=b"{}", method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        index: list[dict[str, Any]] = json.loads(response.read())
    return index


SHM_REGION_PREFIX = "triton_python_backend_shm_region_"


def stub_shm_regions(cmdlines: Sequence[Sequence[str]]) -> list[Path]:
    """``/dev/shm`` files named on python-backend stub command lines.

    Triton removes them on a clean stop; after a SIGKILL they would leak, so
    the stack records them before stopping and deletes what is left.
    """
    return [
        Path("/dev/shm") / arg
        for argv in cmdlines
        for arg in argv
        if arg.startswith(SHM_REGION_PREFIX) and "/" not in arg
    ]
