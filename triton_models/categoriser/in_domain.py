"""How much a product looks like the training data: a factor in [0, 1] on its scores.

The score is the max cosine similarity of the product's MiniLM embedding to the
training products' (``LinearCategoriser.similarity``). Below ``full`` (a low
quantile of the cross-fitted similarities of labelled products, i.e. how close
an ordinary unseen in-domain product is to the training set) the factor falls
linearly, reaching 0 at ``zero``. A factor below 1 lowers every score of the
product alike, so it keeps the hierarchy consistent and sends products unlike
anything seen in training to review (nothing clears the threshold; the top
scores' margin is small).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class InDomain:
    full: float  # similarity at and above which the factor is 1
    zero: float  # similarity at and below which the factor is 0

    def factor(self, similarity: NDArray[Any]) -> NDArray[Any]:
        span = max(self.full - self.zero, 1e-6)
        return np.clip((np.asarray(similarity) - self.zero) / span, 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InDomain | None:
        if not data:
            return None
        return cls(full=float(data["full"]), zero=float(data["zero"]))

    @classmethod
    def fit(cls, similarity: NDArray[Any], full_quantile: float, width: float) -> InDomain:
        """``full``: the ``full_quantile`` of held-out in-domain similarities; ``zero`` below."""
        full = float(np.quantile(similarity, full_quantile)) if len(similarity) else 1.0
        return cls(full=round(full, 6), zero=round(full - width, 6))
