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
import os
import tempfile
import warnings
from pathlib import Path

import torch

from triton_models.image_encoder.encoder import (
    IMAGE_SIZE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    build_torch_model,
)

OPSET = 17


def export_onnx(output: Path, *, opset: int = OPSET) -> Path:
    """Write the ONNX graph to ``output`` atomically and return the path.

    Written to a temporary file first and renamed, so a concurrent reader (a second
    Triton instance starting up) never sees a half-written model.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model = build_torch_model()
    example = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    handle, tmp_name = tempfile.mkstemp(prefix=".image_encoder.", suffix=".onnx", dir=output.parent)
    os.close(handle)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # The legacy exporter warns about itself and about constant folding of
            # the padding slices; neither affects the result.
            warnings.simplefilter("ignore")
            # dynamo=False: the TorchScript exporter needs no onnxscript and keeps
            # the whole graph (weights included) in one self-contained file.
            torch.onnx.export(
                model,
                (example,),
                tmp_name,
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; Triton may run as another user
        os.replace(tmp_name, output)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return output


def ensure_onnx(output: Path) -> Path:
    """``output`` if it already exists, otherwise export it there first."""
    output = Path(output)
    if output.exists() and output.stat().st_size > 0:
        return output
    return export_onnx(output)


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
