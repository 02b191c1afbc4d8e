"""Triton python-backend model: one request per micro-batch, image encoder → categoriser.

Issue 10: the worker sent each micro-batch twice (its images to ``image_encoder``, then
the 1280-d vectors back up to ``categoriser`` with the text), and every image vector
travelled Triton → worker → Triton. This model does both steps on the server through
BLS (business logic scripting), so the worker makes one call and uploads no vectors.

Contract (see ../config.pbtxt):
- inputs ``TITLE``, ``DESCRIPTION``, ``BRAND``, ``RAW_CATEGORY`` as the categoriser's,
  and ``IMAGE``: the product's encoded image bytes, empty when it has none (or its
  fetch failed);
- request parameter ``categoriser_version``: the categoriser version to score with.
  The worker reads scores with that version's label map and thresholds, so the version
  is pinned per request, never "latest" (an ensemble could not pin it);
- outputs: whichever of the categoriser's outputs the client asks for, plus
  ``IMAGE_EMBEDDING`` (zeros where there was no image) and ``IMAGE_OK``.

A categoriser or image-encoder error becomes this request's error, with the code BLS
gives it. In Triton 2.51 that code is always INTERNAL (triton-inference-server/server#7804:
a BLS response loses its error code), so the worker sends a failed batch through the
direct calls, which keep the codes its split-and-dead-letter path needs.

It holds no weights and runs no model: it waits on the other two. Two instances let
two micro-batches be in flight, as the worker sends them (``max_batches_in_flight``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub

TEXT_INPUTS = ("TITLE", "DESCRIPTION", "BRAND", "RAW_CATEGORY")
IMAGE_INPUT = "IMAGE"
IMAGE_OUTPUTS = ("IMAGE_EMBEDDING", "IMAGE_OK")
IMAGE_DIM = 1280
VERSION_PARAMETER = "categoriser_version"


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    entry = config.get("parameters", {}).get(key)
    if not entry:
        return default
    return str(entry.get("string_value", default)) or default


class RequestError(Exception):
    """A request this model answers with an error of ``code`` (the others still run)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _error_response(message: str, code: int) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def _raise_if_error(response: Any, model: str) -> None:
    if not response.has_error():
        return
    error = response.error()
    code = error.code() if hasattr(error, "code") else pb_utils.TritonError.INTERNAL
    raise RequestError(f"{model}: {error.message()}", code)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.image_model = _parameter(config, "image_encoder_model", "image_encoder")
        self.categoriser_model = _parameter(config, "categoriser_model", "categoriser")
        # The image encoder's max_batch_size: a BLS request may not exceed it.
        self.image_chunk = int(_parameter(config, "image_batch", "64"))
        self.all_outputs = [o["name"] for o in config["output"] if o["name"] not in IMAGE_OUTPUTS]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except RequestError as exc:
                responses.append(_error_response(str(exc), exc.code))
            except Exception as exc:  # a bug here must answer, never hang the request
                responses.append(
                    _error_response(
                        f"product_pipeline failed ({exc}); check the Triton log",
                        pb_utils.TritonError.INTERNAL,
                    )
                )
        return responses

    def _version(self, request: Any) -> int:
        raw = json.loads(request.parameters() or "{}").get(VERSION_PARAMETER)
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise RequestError(
                f"request parameter {VERSION_PARAMETER} is {raw!r}; send the categoriser "
                "version (an integer) whose metadata the scores will be read with",
                pb_utils.TritonError.INVALID_ARG,
            ) from None

    def _one(self, request: Any) -> Any:
        version = self._version(request)
        texts = []
        for name in TEXT_INPUTS:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(
                    f"input {name} is missing; send all of {', '.join(TEXT_INPUTS)} and IMAGE",
                    pb_utils.TritonError.INVALID_ARG,
                )
            texts.append(tensor)
        images = pb_utils.get_input_tensor_by_name(request, IMAGE_INPUT)
        rows = texts[0].as_numpy().shape[0]
        raw = images.as_numpy().reshape(-1) if images is not None else np.array([], object)
        if len(raw) != rows:
            raise RequestError(
                f"IMAGE has {len(raw)} rows for {rows} products; send one (empty bytes "
                "when there is no image) per product",
                pb_utils.TritonError.INVALID_ARG,
            )
        vectors, mask, ok = self._encode_images(raw)
        wanted = [n for n in request.requested_output_names() if n not in IMAGE_OUTPUTS]
        scored = pb_utils.InferenceRequest(
            model_name=self.categoriser_model,
            model_version=version,
            requested_output_names=wanted or self.all_outputs,
            inputs=[
                *texts,
                pb_utils.Tensor("IMAGE_EMBEDDING", vectors),
                pb_utils.Tensor("IMAGE_MASK", mask),
            ],
        ).exec()
        _raise_if_error(scored, self.categoriser_model)
        return pb_utils.InferenceResponse(
            output_tensors=[
                *scored.output_tensors(),
                pb_utils.Tensor("IMAGE_EMBEDDING", vectors),
                pb_utils.Tensor("IMAGE_OK", ok),
            ]
        )

    def _encode_images(self, raw: Any) -> tuple[Any, Any, Any]:
        """Embeddings (zeros where absent), IMAGE_MASK and IMAGE_OK for every row."""
        rows = len(raw)
        vectors = np.zeros((rows, IMAGE_DIM), dtype=np.float32)
        ok = np.zeros((rows, 1), dtype=np.bool_)
        present = [i for i, data in enumerate(raw.tolist()) if data]
        for start in range(0, len(present), self.image_chunk):
            chunk = present[start : start + self.image_chunk]
            batch = np.array([[raw[i]] for i in chunk], dtype=np.object_)
            encoded = pb_utils.InferenceRequest(
                model_name=self.image_model,
                requested_output_names=["EMBEDDING", "OK"],
                inputs=[pb_utils.Tensor("IMAGE", batch)],
            ).exec()
            _raise_if_error(encoded, self.image_model)
            embedding = pb_utils.get_output_tensor_by_name(encoded, "EMBEDDING").as_numpy()
            decoded = pb_utils.get_output_tensor_by_name(encoded, "OK").as_numpy()
            vectors[chunk] = embedding
            ok[chunk] = decoded.reshape(-1, 1)
        return vectors, ok.astype(np.float32), ok
