"""Export the EfficientNet-Lite0 feature extractor to ONNX (opset 17, dynamic batch).

The graph takes preprocessed pixels ``PIXELS`` float32 ``[batch, 3, 224, 224]``
(see :func:`encoder.image_to_pixels`) and returns ``EMBEDDING`` float32
``[batch, 1280]``, L2-normalised, exactly like the torch reference.

Usage: ``python -m triton_models.image_encoder.export --output model.onnx``.
The Triton model calls :func:`ensure_onnx` on start-up, so the repository in
git never holds the binary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from triton_models.image_encoder.encoder import (
    IMAGE_SIZE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    build_torch_model,
)
from triton_models.onnx_file import ensure_onnx_file, write_onnx

OPSET = 17


def export_onnx(output: Path, *, opset: int = OPSET) -> Path:
    """Write the ONNX graph to ``output`` atomically and return the path."""
    return write_onnx(
        build_torch_model(),
        (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE),),
        output,
        input_names=[ONNX_INPUT],
        output_name=ONNX_OUTPUT,
        dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
        opset=opset,
    )


def ensure_onnx(output: Path) -> Path:
    """``output`` if it already exists, otherwise export it there first."""
    return ensure_onnx_file(output, export_onnx)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, required=True, help="Where to write model.onnx")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (>= 13)")
    args = parser.parse_args(argv)
    if args.opset < 13:
        parser.error("--opset must be at least 13 (dynamic batch and ReduceMean axes need it)")
    path = export_onnx(args.output, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
