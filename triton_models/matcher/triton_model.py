"""Triton python-backend model of the matcher (copied into every version as ``model.py``).

This file is the single source; ``pair_model.export_version`` writes it into each
new version directory. It stays thin: it loads the version with ``load_version``
(which checks the pickle's sha256 before unpickling) and scores with
``PairModel.score_pairs``, the code ``catstream evaluate-matcher`` runs, so
Triton's scores equal in-process scores. Contract: ``contract.py``. A request
that cannot be decoded gets its own INVALID_ARG error; the others still succeed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the python backend stub


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from triton_models.matcher.pair_model import load_version

        json.loads(args["model_config"])  # a config Triton could not parse never gets here
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        self.model = load_version(version_dir)

    def execute(self, requests: list[Any]) -> list[Any]:
        from triton_models.matcher.contract import CANDIDATES, QUERY, SCORES, decode_record

        responses = []
        for request in requests:
            try:
                query = pb_utils.get_input_tensor_by_name(request, QUERY)
                candidates = pb_utils.get_input_tensor_by_name(request, CANDIDATES)
                if query is None or candidates is None:
                    raise ValueError(f"send both {QUERY} and {CANDIDATES}")
                left = decode_record(query.as_numpy().reshape(-1)[0])
                rights = [decode_record(raw) for raw in candidates.as_numpy().reshape(-1)]
                scores = self.model.score_pairs([(left, right) for right in rights])
                output = pb_utils.Tensor(SCORES, np.asarray(scores, dtype=np.float32))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses
