"""tritonserver's command line: the CPU configs by default, ``configs/gpu.pbtxt`` on request."""

from __future__ import annotations

from pathlib import Path

from deploy.services.triton import TritonService, pytriton_dir

PORTS = {"http": 18000, "grpc": 18001, "metrics": 18002}


def test_default_launch_serves_config_pbtxt(tmp_path: Path) -> None:
    launch = TritonService(tmp_path / "repository", models=["categoriser"]).launch(PORTS, tmp_path)
    assert not [arg for arg in launch.command if arg.startswith("--model-config-name")]
    assert "--load-model=categoriser" in launch.command


def test_gpu_launch_names_the_gpu_configs(tmp_path: Path) -> None:
    service = TritonService(tmp_path / "repository", models=["categoriser"], config_name="gpu")
    launch = service.launch(PORTS, tmp_path)
    assert "--model-config-name=gpu" in launch.command
    assert (tmp_path / "repository" / "categoriser" / "configs" / "gpu.pbtxt").is_file()
    # The stubs find the wheel's libraries beside the pytriton package, wherever it is installed.
    assert launch.env is not None
    libraries = str(pytriton_dir().parent / "nvidia_pytriton.libs")
    assert libraries in launch.env["LD_LIBRARY_PATH"].split(":")
