"""A supervised model's scores, keeping the zero-shot prior for the categories without labels.

The supervised network scores its own leaf set ``S`` (the labelled categories).
A version trained with a prior also carries MiniLM embeddings of every leaf of
its taxonomy (``S`` and the unlabelled leaves ``U``), and its label map is the
whole taxonomy. With ``f`` the product's in-domain factor (how much it looks
like the training data, ``in_domain.InDomain``):

- a labelled leaf ``s`` scores ``f * P_supervised(s)``, exactly what the model
  alone serves (its thresholds were chosen on that);
- an unlabelled leaf ``u`` scores ``(1 - f) * P_prior(u)``, the zero-shot
  softmax over all leaves (``scale * cosine``) that lands on ``u``.

So a product like the training data is the supervised model's; one unlike it
falls back to the prior, which can still serve an unlabelled category when its
subtree mass clears the prior's threshold (the zero-shot threshold), and
otherwise goes to review. Inner categories hold their subtree's mass, so the
hierarchy stays consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.categoriser.hierarchy import LabelSpace, decide
from triton_models.categoriser.scoring import TOP_K, Scored, ScoringParams, softmax

PRIOR_FILE = "prior_embeddings.npy"


@dataclass(frozen=True)
class PriorMix:
    supervised: LabelSpace  # the network's own label map and leaf order
    supervised_scoring: ScoringParams  # its temperature
    embeddings: NDArray[Any]  # float32 [full leaves, dim], in the full space's leaf order
    scale: float

    @classmethod
    def load(cls, version_dir: Path, raw: dict[str, Any]) -> PriorMix | None:
        block = raw.get("prior")
        if not block:
            return None
        embeddings = np.load(version_dir / str(block.get("file", PRIOR_FILE)))
        return cls(
            supervised=LabelSpace.from_dict(block["supervised"]),
            supervised_scoring=ScoringParams.from_dict(block["supervised"]["scoring"]),
            embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
            scale=float(block["scale"]),
        )

    def leaf_probabilities(
        self,
        full: LabelSpace,
        exclusive_logits: NDArray[Any],
        text: NDArray[Any],
        in_domain: NDArray[Any] | None,
    ) -> NDArray[Any]:
        """[n, full leaves]: ``f * P_supervised`` on labelled leaves, ``(1-f) * P_prior`` else."""
        n = exclusive_logits.shape[0]
        factor = (
            np.ones(n, dtype=np.float32)
            if in_domain is None
            else np.clip(np.asarray(in_domain, dtype=np.float32), 0.0, 1.0)
        ).reshape(-1, 1)
        supervised = softmax(exclusive_logits, self.supervised_scoring.temperature_exclusive)
        prior = softmax(self.scale * (np.asarray(text, dtype=np.float32) @ self.embeddings.T))
        position = {leaf: i for i, leaf in enumerate(full.leaf_ids)}
        columns = np.asarray([position[leaf] for leaf in self.supervised.leaf_ids], dtype=np.int64)
        out = ((1.0 - factor) * prior).astype(np.float32)
        out[:, columns] = (factor * supervised).astype(np.float32)
        return out


def score_with_prior(
    full: LabelSpace,
    params: ScoringParams,
    mix: PriorMix,
    exclusive_logits: NDArray[Any],
    text: NDArray[Any],
    in_domain: NDArray[Any] | None,
    k: int = TOP_K,
) -> Scored:
    """Scores over the whole label map, and the served decisions (thresholds in ``params``)."""
    own = mix.leaf_probabilities(full, exclusive_logits, text, in_domain)
    scores = full.subtree_max(np.clip(full.subtree_sum(own), 0.0, 1.0))
    return Scored(scores, decide(full, scores, params.thresholds, k, own))
