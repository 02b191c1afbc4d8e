"""The in-process categoriser: product fields in, the Triton contract's outputs out.

Triton's ``model.py`` and offline code (tests, evaluation, debugging) both use
``Predictor``, so a product gets the same scores wherever it is scored. The
steps: hashed features + MiniLM embedding → TorchScript Wide & Deep → logits →
``scoring.score_logits`` (temperature, hierarchy, thresholds, top-k).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from triton_models.categoriser.encoder import TEXT_DIM, TextEncoder, shared_encoder
from triton_models.categoriser.features import FeatureHasher, ProductFields, TfidfFeatures
from triton_models.categoriser.in_domain import InDomain
from triton_models.categoriser.metadata import (
    FEATURES_FILE,
    NETWORK_FILE,
    ModelMetadata,
    read_metadata,
)
from triton_models.categoriser.network import IMAGE_DIM
from triton_models.categoriser.prior_mix import PriorMix, score_with_prior
from triton_models.categoriser.scoring import score_logits


@dataclass(frozen=True)
class BatchOutputs:
    """The categoriser's outputs for a batch, named as in the Triton contract."""

    probabilities: NDArray[Any]  # float32 [n, labels]
    top_ids: NDArray[Any]  # int64 [n, 5]
    top_scores: NDArray[Any]  # float32 [n, 5]
    predicted_id: NDArray[Any]  # int64 [n]
    confidence: NDArray[Any]  # float32 [n]
    text_embedding: NDArray[Any]  # float32 [n, 384]
    path_scores: NDArray[Any]  # float32 [n, depth]: the predicted path's scores, top first

    def as_triton(self) -> dict[str, NDArray[Any]]:
        return {
            "PROBABILITIES": self.probabilities.astype(np.float32),
            "TOP_IDS": self.top_ids.astype(np.int64),
            "TOP_SCORES": self.top_scores.astype(np.float32),
            "PREDICTED_ID": self.predicted_id.reshape(-1, 1).astype(np.int64),
            "CONFIDENCE": self.confidence.reshape(-1, 1).astype(np.float32),
            "TEXT_EMBEDDING": self.text_embedding.astype(np.float32),
            "PATH_SCORES": self.path_scores.astype(np.float32),
        }


class Predictor:
    def __init__(
        self,
        network: torch.nn.Module,
        metadata: ModelMetadata,
        encoder: TextEncoder,
        device: str = "cpu",
        tfidf: TfidfFeatures | None = None,
        prior: PriorMix | None = None,
    ) -> None:
        self.network = network.to(device).eval()
        self.metadata = metadata
        self.hasher = FeatureHasher(int(metadata.network.get("n_buckets", 2)))
        self.tfidf = tfidf
        self.in_domain = InDomain.from_dict(metadata.raw.get("in_domain"))
        self.encoder = encoder
        self.device = device
        self.prior = prior  # the zero-shot prior for the categories without labels

    @classmethod
    def load(
        cls, version_dir: Path, device: str = "cpu", encoder: TextEncoder | None = None
    ) -> Predictor:
        metadata = read_metadata(version_dir)
        network = torch.jit.load(  # type: ignore[no-untyped-call]
            str(version_dir / NETWORK_FILE), map_location=device
        )
        tfidf = None
        if (version_dir / FEATURES_FILE).is_file():
            data = json.loads((version_dir / FEATURES_FILE).read_text(encoding="utf-8"))
            tfidf = TfidfFeatures.from_dict(data)
        prior = PriorMix.load(version_dir, metadata.raw)
        return cls(network, metadata, encoder or shared_encoder(device), device, tfidf, prior)

    def predict(
        self,
        fields: Sequence[ProductFields],
        image: NDArray[Any] | None = None,
        image_mask: NDArray[Any] | None = None,
    ) -> BatchOutputs:
        text = self.encoder.encode_products(fields)
        return self.predict_encoded(fields, text, image, image_mask)

    def predict_encoded(
        self,
        fields: Sequence[ProductFields],
        text: NDArray[Any],
        image: NDArray[Any] | None = None,
        image_mask: NDArray[Any] | None = None,
    ) -> BatchOutputs:
        n = len(fields)
        if image is None:
            image = np.zeros((n, IMAGE_DIM), dtype=np.float32)
        if image_mask is None:
            image_mask = (np.abs(image).sum(axis=1) > 0).astype(np.float32)
        sparse = self.tfidf.transform(fields).batch() if self.tfidf else self.hasher.batch(fields)
        with torch.inference_mode():
            independent, exclusive = self.network(
                torch.from_numpy(sparse.indices).to(self.device),
                torch.from_numpy(sparse.offsets).to(self.device),
                torch.from_numpy(sparse.weights).to(self.device),
                torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32)).to(self.device),
                torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(self.device),
                torch.from_numpy(np.ascontiguousarray(image_mask, dtype=np.float32).reshape(-1)).to(
                    self.device
                ),
            )
        in_domain = None
        if self.in_domain is not None:
            similarity = self.network.similarity(  # type: ignore[operator]
                torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32)).to(self.device)
            )
            in_domain = self.in_domain.factor(similarity.cpu().numpy())
        if self.prior is not None:
            scored = score_with_prior(
                self.metadata.space,
                self.metadata.scoring,
                self.prior,
                exclusive.cpu().numpy(),
                text.reshape(n, TEXT_DIM),
                in_domain,
            )
        else:
            scored = score_logits(
                self.metadata.space,
                self.metadata.scoring,
                independent.cpu().numpy(),
                exclusive.cpu().numpy(),
                in_domain=in_domain,
            )
        decision = scored.decision
        return BatchOutputs(
            probabilities=scored.scores,
            top_ids=decision.top_ids,
            top_scores=decision.top_scores,
            predicted_id=decision.predicted,
            confidence=decision.confidence,
            text_embedding=text.reshape(n, TEXT_DIM).astype(np.float32),
            path_scores=self.metadata.space.path_scores(scored.scores, decision.predicted),
        )
