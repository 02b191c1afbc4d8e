"""all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime: text in, float32 ``[n, 384]`` out.

Equal to ``SentenceTransformer.encode(..., normalize_embeddings=True)`` (cosine
> 0.9999, ``tests/unit/test_text_encoder_onnx.py``): the same WordPiece tokenizer
(the model's ``tokenizer.json``), truncated at the model's ``max_seq_length``
(256), and the graph of :mod:`export`, which pools and normalises. The Triton
``text_encoder``, the categoriser's in-process encoder and training all embed
through this class, so served and trained embeddings agree.

Like sentence-transformers, a call sorts its sentences by token count; unlike it,
the sorted run is cut where padding would cost more than another ONNX call
(``padding_plan``), not every ``batch_size`` rows, so a 30-token title is not padded
to the 59 tokens of the longest title of its 64.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from triton_models.onnx_session import CPU_PROVIDERS, onnx_session
from triton_models.text_encoder.export import (
    ONNX_INPUTS,
    ONNX_OUTPUT,
    Precision,
    cached_onnx,
    model_dir,
)

# The tokenizer's Rust thread pool would compete with ONNX Runtime's threads.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EMBEDDING_DIM = 384
GPU_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# What one more ONNX call costs, in padded token rows. On CPU a call's fixed cost is about
# that of a few tokens, far below the padding it saves. On a GPU, padding is almost free
# and each call pays its kernel launches, so there a run is cut only for a large saving.
CALL_COST_TOKENS = 8
GPU_CALL_COST_TOKENS = 2048


def _tokenizer(model_path: Path) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    # tokenizer.json pads and truncates at 128; sentence-transformers overrides both with
    # the model's max_seq_length and pads per batch, which this class does itself.
    config = json.loads((model_path / "sentence_bert_config.json").read_text())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
    return tokenizer


class _Encoder:
    """Tokenising, sorting and padding: what the ONNX and the torch networks share."""

    batch_size: int
    call_cost: int
    _tokenizer: Any

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        """Token ids per sentence, ``[CLS] ... [SEP]``, at most ``max_seq_length``."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(sentences))]

    def encode(self, sentences: Sequence[str]) -> NDArray[np.float32]:
        """L2-normalised embeddings ``[len(sentences), 384]``, in the order given."""
        result = np.zeros((len(sentences), EMBEDDING_DIM), np.float32)
        if not sentences:
            return result
        ids = self.tokenize(sentences)
        counts = np.asarray([len(row) for row in ids])
        order = np.argsort(counts, kind="stable")
        lengths = counts[order].tolist()
        for start, end in padding_plan(lengths, self.batch_size, self.call_cost):
            chunk = order[start:end]
            result[chunk] = self._run(*_padded([ids[i] for i in chunk]))
        return result

    def _run(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        raise NotImplementedError


def _padded(rows: list[list[int]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``input_ids`` and ``attention_mask`` ``[len(rows), longest]``, zero-padded."""
    width = max(len(row) for row in rows)
    input_ids = np.zeros((len(rows), width), np.int64)  # [PAD] is id 0
    attention_mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


class MiniLM(_Encoder):
    """The ONNX graph and its tokenizer. ``onnx_path`` defaults to the shared cache file."""

    def __init__(
        self,
        onnx_path: Path | None = None,
        *,
        threads: int | None = None,
        providers: Sequence[str] = CPU_PROVIDERS,
        batch_size: int = 64,
    ) -> None:
        self.onnx_path: Path | None = onnx_path or cached_onnx()
        self.batch_size = batch_size
        self._tokenizer = _tokenizer(model_dir())
        self._session = onnx_session(self.onnx_path, threads, providers)
        self.providers: list[str] = list(self._session.get_providers())
        on_gpu = self.providers[0] == "CUDAExecutionProvider"
        self.call_cost = GPU_CALL_COST_TOKENS if on_gpu else CALL_COST_TOKENS

    def _run(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        feeds = dict(zip(ONNX_INPUTS, (input_ids, attention_mask), strict=True))
        return np.asarray(self._session.run([ONNX_OUTPUT], feeds)[0], dtype=np.float32)


class TorchMiniLM(_Encoder):
    """The same network in torch (:func:`export.build_torch_model`), for a CUDA device.

    A GPU without onnxruntime-gpu (the ``onnxruntime`` wheel has no CUDA provider)
    runs it here, in float16 with fused attention; pooling and normalisation stay in
    float32. On a CPU it runs in float32 and equals the ONNX graph.
    """

    def __init__(self, device: str = "cuda", *, batch_size: int = 256) -> None:
        import torch

        from triton_models.text_encoder.export import build_torch_model

        self._torch = torch
        self.device = torch.device(device)
        self.onnx_path = None
        self.batch_size = batch_size
        self._tokenizer = _tokenizer(model_dir())
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self._network = build_torch_model(attention="sdpa").to(self.device, dtype)
        self.providers = [f"torch:{self.device}:{str(dtype).removeprefix('torch.')}"]
        self.call_cost = GPU_CALL_COST_TOKENS if self.device.type == "cuda" else CALL_COST_TOKENS

    def _run(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(self.device, non_blocking=True)
            mask = torch.from_numpy(attention_mask).to(self.device, non_blocking=True)
            return self._network(ids, mask).cpu().numpy()


def sentence_encoder(
    device: str = "cpu",
    *,
    threads: int | None = None,
    batch_size: int = 64,
    onnx_path: Path | None = None,
    precision: Precision = "fp32",
) -> MiniLM | TorchMiniLM:
    """MiniLM for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``).

    On a GPU: ONNX Runtime's CUDA provider where this onnxruntime has it
    (onnxruntime-gpu, the same graph as on CPU), else torch on CUDA, else the CPU.
    ``precision`` ``"int8"`` takes the quantised graph on the CPU, one sentence per call
    (export.py says what it costs); a GPU always runs floating point, where int8 MatMuls
    would fall back to the host.
    """
    if device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return MiniLM(
                onnx_path, threads=threads, providers=GPU_PROVIDERS, batch_size=batch_size
            )
        import torch

        if torch.cuda.is_available():
            return TorchMiniLM(device, batch_size=max(batch_size, 256))
    if onnx_path is None and precision != "fp32":
        onnx_path = cached_onnx(precision=precision)
        # Dynamic quantisation scales a call's activations together, so in a batch an
        # int8 embedding (and the prediction made from it) would depend on its
        # batch-mates. One sentence per call keeps it the same in any batch; measured
        # on dev titles: 2.6 ms per title, against 1.95 batched and 4.5 for float32.
        batch_size = 1
    return MiniLM(onnx_path, threads=threads, providers=CPU_PROVIDERS, batch_size=batch_size)


def padding_plan(
    lengths: Sequence[int], max_rows: int, call_cost: int = CALL_COST_TOKENS
) -> list[tuple[int, int]]:
    """``[start, end)`` runs of ascending ``lengths`` that cost the fewest token rows.

    A run is padded to its last (longest) row, so it costs ``rows × longest`` plus
    ``call_cost`` for the call; a run holds at most ``max_rows``. Exact, by dynamic
    programming over the cut points (n × max_rows steps: ~4 ms at 256 sentences,
    against seconds of encoding). Measured on the pipeline bench's feed (titles of
    10–59 tokens), encoding 64 of them fell from 18 to 10 ms per sentence on one core.
    """
    n = len(lengths)
    best = [0] * (n + 1)  # best[j]: the cheapest cost of the first j rows
    cut = [0] * (n + 1)  # cut[j]: where the last run of that cheapest plan starts
    for end in range(1, n + 1):
        width = lengths[end - 1]
        best[end], cut[end] = min(
            (best[start] + (end - start) * width + call_cost, start)
            for start in range(max(0, end - max_rows), end)
        )
    runs = []
    while n > 0:
        runs.append((cut[n], n))
        n = cut[n]
    return runs[::-1]
