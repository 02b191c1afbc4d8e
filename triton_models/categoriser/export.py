"""Write a trained model as a new numbered version of the Triton ``categoriser`` model.

The version is assembled in a hidden temporary directory beside the versions and
renamed into place at the end, so Triton (which scans numbered directories)
never sees a half-written version. See ``metadata.py`` for the layout.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from catstream.logs import get_logger
from catstream.taxonomy import Taxonomy
from triton_models.categoriser.metadata import (
    METADATA_FILE,
    METADATA_FORMAT,
    MODEL_NAME,
    NETWORK_FILE,
    TAXONOMY_FILE,
    TRAIN_ROWS_FILE,
    model_dir,
    taxonomy_lines,
    version_dirs,
)
from triton_models.categoriser.network import WideAndDeep, to_torchscript
from triton_models.python_backend import install_model_py

log = get_logger(__name__)

TRITON_MODEL_SOURCE = Path(__file__).with_name("triton_model.py")


def next_version(model_repository: Path, name: str = MODEL_NAME) -> int:
    root = model_dir(model_repository, name)
    numbers = (
        [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
        if (root.is_dir())
        else []
    )
    return max(numbers, default=0) + 1


def require_model_config(model_repository: Path, name: str = MODEL_NAME) -> Path:
    """The model's folder in the repository; FileNotFoundError if it has no Triton config."""
    root = model_dir(model_repository, name)
    if not (root / "config.pbtxt").is_file():
        raise FileNotFoundError(
            f"{root / 'config.pbtxt'} not found; point --model-repository (or "
            "CATSTREAM_MODEL_REPOSITORY) at a repository with a categoriser config"
        )
    return root


def export_version(
    network: WideAndDeep | torch.jit.ScriptModule,
    model_repository: Path,
    metadata: dict[str, Any],
    train_rows: Sequence[dict[str, Any]],
    name: str = MODEL_NAME,
    files: Mapping[str, str | bytes] | None = None,
    taxonomy: Taxonomy | None = None,
) -> Path:
    """Write ``<repository>/<name>/<N>/`` and return it (N = highest existing + 1).

    ``network`` is scripted with ``to_torchscript`` (a ScriptModule is saved as
    it is); ``files`` are extra files of the version (name → text or bytes);
    ``metadata`` is what training
    knows (label space, scoring, provenance); the format, name, version and
    creation time are added here. ``taxonomy`` is written beside them as
    ``taxonomy.txt`` (and its hash into the metadata), so the version carries
    its own taxonomy and prediction needs no ``--taxonomy``.
    """
    root = require_model_config(model_repository, name)
    version = next_version(model_repository, name)
    staging = root / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        scripted = (
            network if isinstance(network, torch.jit.ScriptModule) else to_torchscript(network)
        )
        for file_name, content in (files or {}).items():
            if isinstance(content, bytes):
                (staging / file_name).write_bytes(content)
            else:
                (staging / file_name).write_text(content, encoding="utf-8")
        if taxonomy is not None:
            (staging / TAXONOMY_FILE).write_text(taxonomy_lines(taxonomy), encoding="utf-8")
        torch.jit.save(scripted, str(staging / NETWORK_FILE))
        install_model_py(TRITON_MODEL_SOURCE, staging)  # with its bytecode: see python_backend
        with (staging / TRAIN_ROWS_FILE).open("w", encoding="utf-8") as handle:
            for row in train_rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        written = {
            "format": METADATA_FORMAT,
            "model_name": name,
            "version": version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in metadata.items() if k not in {"format", "model_name", "version"}},
        }
        if taxonomy is not None:
            written["taxonomy_hash"] = taxonomy.hash
            written["taxonomy_file"] = TAXONOMY_FILE
        (staging / METADATA_FILE).write_text(json.dumps(written, indent=1, ensure_ascii=False))
        target = root / str(version)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info(
        "model_exported",
        version=version,
        path=str(target),
        versions=sorted(version_dirs(model_repository, name)),
    )
    return target
