"""The served pair model: scores through Triton's ``matcher`` model, like the categoriser.

``TritonPairModel`` has the ``PairModel`` interface ``OfferMatcher`` uses
(``score_pairs``, ``threshold``, ``metadata``). The version is the highest one
Triton has READY (asked again every ``model_refresh_s``, so a version loaded by
``catstream train-matcher`` is picked up without a restart); its threshold and
metadata come from that version's ``metadata.json`` in the model repository, and
every request is pinned to it. Blocking (the matching agent calls it from a
thread). Triton unreachable, or the matcher not loaded → ``RecoverableError``
(back off, never ack past); a request Triton calls invalid → ``ValueError``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc import InferenceServerClient, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from catstream.errors import RecoverableError
from catstream.logs import get_logger
from catstream.metrics import TRITON_ERRORS, TRITON_SECONDS
from catstream.settings import Settings
from triton_models.matcher.contract import CANDIDATES, MODEL_NAME, QUERY, SCORES, encode_record
from triton_models.matcher.features import MatchRecord
from triton_models.matcher.pair_model import METADATA_FILE, MatcherVersionError
from triton_models.triton_client import TritonRequestInvalid, classify, describe

log = get_logger(__name__)


class TritonPairModel:
    def __init__(self, settings: Settings, client: InferenceServerClient | None = None) -> None:
        self.settings = settings
        self.repository = Path(settings.model_repository)
        self._client = client or InferenceServerClient(settings.triton_grpc_url)
        self._lock = threading.Lock()
        self._checked = 0.0
        self.version = 0
        self.threshold = 0.5
        self.metadata: dict[str, Any] = {}
        self.refresh(force=True)

    # ------------------------------------------------------------- version

    def refresh(self, force: bool = False) -> int:
        """Follow the highest READY version (at most every ``model_refresh_s``)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked < self.settings.model_refresh_s:
                return self.version
            version = self._ready_version()
            if version != self.version:
                self.metadata = self._metadata(version)
                self.threshold = float(self.metadata["threshold"])
                log.info("matcher_version_served", version=version, was=self.version or None)
                self.version = version
            self._checked = now
            return self.version

    def _ready_version(self) -> int:
        try:
            index = self._client.get_model_repository_index(
                as_json=True, client_timeout=self.settings.triton_timeout_s
            )
        except InferenceServerException as exc:
            raise self._unavailable("listing Triton's models", exc) from exc
        ready = [
            int(model["version"])
            for model in index.get("models", [])
            if model.get("name") == MODEL_NAME
            and model.get("state") == "READY"
            and str(model.get("version", "")).isdigit()
        ]
        if not ready:
            raise RecoverableError(
                "triton",
                f"Triton at {self.settings.triton_grpc_url} serves no {MODEL_NAME} version; "
                "train one with `catstream train-matcher --pairs PAIRS.jsonl` (it loads it), "
                "retrying",
            )
        return max(ready)

    def _metadata(self, version: int) -> dict[str, Any]:
        path = self.repository / MODEL_NAME / str(version) / METADATA_FILE
        try:
            metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MatcherVersionError(
                f"Triton serves {MODEL_NAME} version {version}, but {path} is unreadable "
                f"({exc}): point CATSTREAM_MODEL_REPOSITORY at the repository Triton serves"
            ) from exc
        return metadata

    # ------------------------------------------------------------- scoring

    def score_pairs(self, pairs: Sequence[tuple[MatchRecord, MatchRecord]]) -> NDArray[Any]:
        """P(same product) per pair; one Triton request per distinct left record."""
        scores = np.zeros(len(pairs), dtype=np.float32)
        if not pairs:
            return scores
        version = self.refresh()
        by_left: dict[int, list[int]] = {}
        lefts: dict[int, MatchRecord] = {}
        for position, (left, _) in enumerate(pairs):
            by_left.setdefault(id(left), []).append(position)
            lefts[id(left)] = left
        for key, positions in by_left.items():
            rights = [pairs[p][1] for p in positions]
            scores[positions] = self._score(version, lefts[key], rights)
        return scores

    def _score(self, version: int, left: MatchRecord, rights: list[MatchRecord]) -> NDArray[Any]:
        query = InferInput(QUERY, [1], "BYTES")
        query.set_data_from_numpy(np.array([encode_record(left)], dtype=np.object_))
        candidates = InferInput(CANDIDATES, [len(rights)], "BYTES")
        candidates.set_data_from_numpy(
            np.array([encode_record(r) for r in rights], dtype=np.object_)
        )
        started = time.perf_counter()
        try:
            result = self._client.infer(
                MODEL_NAME,
                [query, candidates],
                model_version=str(version),
                outputs=[InferRequestedOutput(SCORES)],
                client_timeout=self.settings.triton_timeout_s,
            )
        except InferenceServerException as exc:
            TRITON_ERRORS.labels(MODEL_NAME).inc()
            if classify(exc) is TritonRequestInvalid:
                raise ValueError(f"Triton refused the matcher request: {describe(exc)}") from exc
            self._checked = 0.0  # the version may have been unloaded: ask again next time
            raise self._unavailable(f"scoring with {MODEL_NAME} version {version}", exc) from exc
        TRITON_SECONDS.labels(MODEL_NAME).observe(time.perf_counter() - started)
        output = result.as_numpy(SCORES)
        if output is None or len(output) != len(rights):
            raise RecoverableError("triton", f"{MODEL_NAME} answered without {len(rights)} scores")
        return np.asarray(output, dtype=np.float32)

    def _unavailable(self, what: str, exc: InferenceServerException) -> RecoverableError:
        return RecoverableError(
            "triton",
            f"{what} at {self.settings.triton_grpc_url}: {describe(exc)}; check it is up "
            "(`catstream stack status`) and serves the matcher; retrying",
        )

    def close(self) -> None:
        self._client.close()
