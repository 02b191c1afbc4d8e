"""Give a supervised version the zero-shot prior for the categories it has no labels for.

The supervised model scores the labelled categories only. This adds what
``triton_models.categoriser.prior_mix`` needs to serve the rest of the
taxonomy: MiniLM embeddings of every leaf (``training.zero_shot``, cached under
the stack's home), the whole taxonomy as the version's label map, the
supervised model's thresholds on its own categories and the zero-shot
threshold on the others. The network itself is unchanged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catstream.taxonomy import Taxonomy
from training.zero_shot import ZeroShotConfig, category_embeddings, zero_shot_space
from triton_models.categoriser.encoder import TextEncoder
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.prior_mix import PRIOR_FILE
from triton_models.categoriser.scoring import ScoringParams


@dataclass(frozen=True)
class PriorAttachment:
    metadata: dict[str, Any]  # overrides of the version's metadata
    files: dict[str, bytes]  # extra binary files of the version
    unlabelled_leaves: int


def full_space(taxonomy: Taxonomy, supervised: LabelSpace) -> LabelSpace:
    """The whole taxonomy; leaf set: the supervised one, then every other taxonomy leaf."""
    labelled = list(supervised.leaf_ids)
    known = set(labelled)
    others = [c for c in taxonomy.leaves() if c not in known]
    built = LabelSpace.build(taxonomy, taxonomy.ids, [*labelled, *others])
    return LabelSpace(entries=built.entries, leaf_ids=(*labelled, *others))


def attach_prior(
    taxonomy: Taxonomy,
    supervised: LabelSpace,
    scoring: ScoringParams,
    encoder: TextEncoder,
    cache_dir: Path | None = None,
    config: ZeroShotConfig | None = None,
) -> PriorAttachment | None:
    """The prior for ``taxonomy``'s unlabelled leaves (None when every leaf has labels)."""
    config = config or ZeroShotConfig()
    full = full_space(taxonomy, supervised)
    unlabelled = len(full.leaf_ids) - len(supervised.leaf_ids)
    if unlabelled == 0:
        return None
    # Every category's embedding, as the zero-shot model computes (and caches) them.
    every = zero_shot_space(taxonomy).label_ids
    row = {c: i for i, c in enumerate(every)}
    embeddings = category_embeddings(taxonomy, every, encoder, config.name_weight, cache_dir)
    embeddings = embeddings[[row[leaf] for leaf in full.leaf_ids]]
    thresholds = np.full(len(full), config.threshold, dtype=np.float32)
    for index, entry in enumerate(full.entries):
        if entry.id in supervised:
            thresholds[index] = scoring.thresholds[supervised.index(entry.id)]
    full_scoring = ScoringParams(
        temperature_exclusive=scoring.temperature_exclusive,
        temperature_independent=scoring.temperature_independent,
        exclusive_weight=1.0,
        thresholds=thresholds,
    )
    buffer = io.BytesIO()
    np.save(buffer, embeddings.astype(np.float16))
    metadata = {
        **full.to_dict(),
        "scoring": full_scoring.to_dict(),
        "prior": {
            "file": PRIOR_FILE,
            "scale": config.scale,
            "threshold": config.threshold,
            "name_weight": config.name_weight,
            "labelled_leaves": len(supervised.leaf_ids),
            "unlabelled_leaves": unlabelled,
            "supervised": {**supervised.to_dict(), "scoring": scoring.to_dict()},
            "rule": "labelled leaf: f * P_supervised; unlabelled leaf: (1 - f) * P_prior, "
            "f = the in-domain factor",
        },
    }
    return PriorAttachment(metadata, {PRIOR_FILE: buffer.getvalue()}, unlabelled)
