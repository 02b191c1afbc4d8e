"""Installing a python-backend ``model.py`` into a model version, compiled in advance.

Triton (2.51) keeps a loaded version serving through a later ``load_model`` of its
model (a promotion adding a version, a changed version policy) only when the
version's files are unchanged since it was loaded. The python backend's stub
imports ``<version>/model.py`` in an isolated interpreter that ignores
``PYTHONDONTWRITEBYTECODE``, so its first load wrote ``__pycache__/model.*.pyc``
into the version, and the next promotion reloaded the champion beside the
challenger (41.9 s of a live retrain on a loaded 2-core host). Writing the
bytecode at export time, before Triton ever sees the version, leaves nothing
for the import to write (the stub runs the interpreter of this venv).
"""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
from pathlib import Path

MODEL_FILE = "model.py"


def install_model_py(source: Path, version_dir: Path) -> Path:
    """Copy ``source`` to ``<version_dir>/model.py`` with its bytecode beside it."""
    target = version_dir / MODEL_FILE
    shutil.copyfile(source, target)
    py_compile.compile(
        str(target),
        cfile=importlib.util.cache_from_source(str(target)),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
    )
    return target
