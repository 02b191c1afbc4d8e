"""The Triton model repository a stack serves: a working copy of ``triton_models/repository``.

The source tree holds model code and configs; trained categoriser versions and
the served-version policy are *state*, written by ``catstream train`` and
``catstream model rollback``. Keeping that state in a copy under the stack's
home means training never dirties the git tree, and each test session or demo
gets its own versions. ``sync`` refreshes code and configs from the source on
every start while keeping trained versions and each config's version policy.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from catstream.settings import MODEL_REPOSITORY_SOURCE

_POLICY = re.compile(r"^version_policy\s*:.*$", re.MULTILINE)
MARKER = ".catstream-working-copy"


def sync_model_repository(target: Path, source: Path = MODEL_REPOSITORY_SOURCE) -> Path:
    """Copy ``source`` over ``target``, keeping ``target``'s trained versions and policies.

    Only a working copy this function made (or a path that does not exist yet) is
    touched: a repository someone points the stack at on purpose is served as it is.
    """
    if target.exists() and not (target / MARKER).exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    (target / MARKER).write_text("made by catstream from triton_models/repository\n")
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        destination = target / relative
        if path.is_dir() or "__pycache__" in relative.parts:
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".pbtxt" and destination.exists():
            _copy_keeping_policy(path, destination)
        else:
            shutil.copy2(path, destination)
    return target


def _copy_keeping_policy(source: Path, destination: Path) -> None:
    kept = _POLICY.search(destination.read_text())
    text = source.read_text()
    if kept is not None:
        text = _POLICY.sub(lambda _: kept.group(0), text, count=1)
    destination.write_text(text)
