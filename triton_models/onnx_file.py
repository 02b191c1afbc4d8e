"""Writing an exported ONNX graph to disk, shared by the text and image encoders.

Both encoders export a torch model once per machine and several processes load it (the
Triton stubs of the text encoder, image encoder and categoriser start at once), so the
file is written to a temporary name and renamed: a reader never sees half a model.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def write_onnx(
    model: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    output: Path,
    *,
    input_names: list[str],
    output_name: str,
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> Path:
    """Export ``model`` traced on ``example`` to ``output`` atomically; returns the path."""

    def export(tmp_name: str) -> None:
        with torch.inference_mode(), warnings.catch_warnings():
            # The legacy exporter warns about itself and about traced shape arithmetic
            # (attention masks, padding slices); neither affects the result (the tests
            # compare the graphs' outputs with torch's).
            warnings.simplefilter("ignore")
            # dynamo=False: the TorchScript exporter needs no onnxscript and keeps the
            # whole graph (weights included) in one self-contained file.
            torch.onnx.export(
                model,
                example,
                tmp_name,
                input_names=input_names,
                output_names=[output_name],
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )

    return write_atomically(Path(output), export)


def write_atomically(output: Path, write: Callable[[str], Any]) -> Path:
    """``write(temporary name)`` beside ``output``, then rename it to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; Triton may run as another user
        os.replace(tmp_name, output)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return output


def ensure_onnx_file(output: Path, export: Callable[[Path], Any]) -> Path:
    """``output`` if it already exists, otherwise ``export(output)`` first."""
    output = Path(output)
    if not (output.exists() and output.stat().st_size > 0):
        export(output)
    return output
