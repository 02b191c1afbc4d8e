"""Triton python-backend model of the categoriser (copied into every version as ``model.py``).

This file is the single source; ``export.py`` writes it into each new version
directory, where the python backend looks for ``<version>/model.py``. It stays
thin: ``serving.Predictor`` does the work, the same code offline prediction and
tests use, so Triton's scores equal in-process scores.

Contract (see ../config.pbtxt): TITLE, DESCRIPTION, BRAND, RAW_CATEGORY (BYTES [1]),
IMAGE_EMBEDDING (FP32 [1280]), IMAGE_MASK (FP32 [1]) in; PROBABILITIES, TOP_IDS,
TOP_SCORES, PREDICTED_ID, CONFIDENCE, TEXT_EMBEDDING, PATH_SCORES out. Every request of a
dynamic batch is scored in one pass; a request that cannot be decoded gets its
own error and the others still succeed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # provided by the python backend stub
from numpy.typing import NDArray

TEXT_INPUTS = ("TITLE", "DESCRIPTION", "BRAND", "RAW_CATEGORY")
DEFAULT_TORCH_THREADS = 1


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    entry = config.get("parameters", {}).get(key)
    if not entry:
        return default
    return str(entry.get("string_value", default)) or default


def _texts(request: Any, name: str) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"input {name} is missing; send all of {', '.join(TEXT_INPUTS)}")
    values = []
    for value in tensor.as_numpy().reshape(-1).tolist():
        values.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
    return values


def _floats(request: Any, name: str, width: int, rows: int) -> NDArray[Any]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return np.zeros((rows, width), dtype=np.float32)
    array = np.asarray(tensor.as_numpy(), dtype=np.float32).reshape(rows, width)
    if not np.isfinite(array).all():
        raise ValueError(f"input {name} holds NaN or infinity; send finite values")
    return array


def invalid_argument(message: str | None) -> Any:
    """A per-request INVALID_ARG error: the client splits the batch and dead-letters the product.

    A plain ``TritonError`` is INTERNAL, which the client treats as the server's
    fault and retries forever.
    """
    return pb_utils.TritonError(str(message), pb_utils.TritonError.INVALID_ARG)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(_parameter(config, "torch_num_threads", str(DEFAULT_TORCH_THREADS)))
        torch.set_num_threads(threads)
        device = "cpu"
        if args.get("model_instance_kind") == "GPU":
            device = f"cuda:{args['model_instance_device_id']}"
        version_dir = Path(args["model_repository"]) / str(args["model_version"])

        from triton_models.categoriser.encoder import shared_encoder
        from triton_models.categoriser.features import ProductFields
        from triton_models.categoriser.serving import Predictor
        from triton_models.text_encoder.export import parse_precision

        self.fields_type = ProductFields
        # The config's text_precision (fp32 or int8); a wrong value fails the load, naming both.
        precision = parse_precision(_parameter(config, "text_precision", "fp32"))
        # MiniLM runs on ONNX Runtime, which would otherwise take a thread per core.
        encoder = shared_encoder(device, threads=threads, precision=precision)
        self.predictor = Predictor.load(version_dir, device=device, encoder=encoder)
        pb_utils.Logger.log_info(
            f"categoriser version {args['model_version']} ready: device={device} "
            f"labels={len(self.predictor.metadata.space)} text_precision={precision}"
        )

    def _decode(self, request: Any) -> tuple[list[Any], NDArray[Any], NDArray[Any]]:
        title, description, brand, category = (_texts(request, n) for n in TEXT_INPUTS)
        rows = len(title)
        if not (len(description) == len(brand) == len(category) == rows):
            raise ValueError("TITLE, DESCRIPTION, BRAND and RAW_CATEGORY need the same batch size")
        fields = [
            self.fields_type(title=t, brand=b, raw_category=c, description=d)
            for t, b, c, d in zip(title, brand, category, description, strict=True)
        ]
        try:
            image = _floats(request, "IMAGE_EMBEDDING", 1280, rows)
            mask = _floats(request, "IMAGE_MASK", 1, rows).reshape(-1)
        except ValueError as exc:  # numpy's "cannot reshape": a wrong embedding width
            raise ValueError(f"IMAGE_EMBEDDING/IMAGE_MASK do not match the batch: {exc}") from None
        return fields, image, mask

    def execute(self, requests: list[Any]) -> list[Any]:
        decoded: list[tuple[list[Any], NDArray[Any], NDArray[Any]] | None] = []
        errors: list[str | None] = []
        for request in requests:
            try:
                decoded.append(self._decode(request))
                errors.append(None)
            except (ValueError, UnicodeDecodeError) as exc:
                decoded.append(None)
                errors.append(str(exc))
        good = [d for d in decoded if d is not None]
        outputs: dict[str, NDArray[Any]] = {}
        if good:
            fields = [f for d in good for f in d[0]]
            image = np.concatenate([d[1] for d in good])
            mask = np.concatenate([d[2] for d in good])
            outputs = self.predictor.predict(fields, image, mask).as_triton()
        responses = []
        start = 0
        for item, error in zip(decoded, errors, strict=True):
            if item is None:
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[], error=invalid_argument(error))
                )
                continue
            end = start + len(item[0])
            tensors = [pb_utils.Tensor(name, value[start:end]) for name, value in outputs.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses
