"""A model version's model.py is installed with its bytecode, so loading it writes nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from triton_models.python_backend import install_model_py


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_importing_an_installed_model_py_leaves_the_version_unchanged(tmp_path: Path) -> None:
    source = tmp_path / "triton_model.py"
    source.write_text("class TritonPythonModel:\n    pass\n")
    version = tmp_path / "repository" / "m" / "1"
    version.mkdir(parents=True)
    install_model_py(source, version)
    before = _files(version)
    # As Triton's python-backend stub imports it: an isolated interpreter (-I ignores
    # PYTHONDONTWRITEBYTECODE), the version directory on sys.path, `import model`.
    subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(version)!r}); import model",
        ],
        check=True,
    )
    # Triton reloads a loaded version whose files changed: nothing may have been written.
    assert _files(version) == before
    assert (version / "model.py").read_text() == source.read_text()
