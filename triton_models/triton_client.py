"""A small async Triton client: timeouts, retries with backoff, clear error classes.

Wraps ``tritonclient.grpc.aio.InferenceServerClient`` for every model catstream
serves (text encoder, image encoder, categoriser)::

    client = TritonClient.from_settings(settings)
    vectors = await client.embed_texts(["red cotton t-shirt", "oak dining table"])
    outputs = await client.infer("categoriser", {"TEXT": rows}, ["SCORES"])
    await client.close()

Errors, and what a caller does with them:

- ``TritonUnavailable`` (recoverable): the server could not be reached or did not
  answer in time, even after ``retries`` retries with exponential backoff + jitter.
  Back off and retry the batch later; never commit past it.
- ``TritonRequestInvalid``: the server rejected *this input* (bad shape, bad
  UTF-8, ...). Retrying cannot help: dead-letter the event.
- ``TritonServerError``: anything else (model not loaded, model crashed). Not the
  input's fault and not retried here: pause and alert; check the server log.

All three derive from ``TritonError``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpc_client
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from catstream.backoff import Backoff
from catstream.logs import get_logger
from catstream.metrics import TRITON_ERRORS, TRITON_SECONDS
from catstream.settings import Settings

log = get_logger(__name__)

TEXT_ENCODER_INPUT = "TEXT"
TEXT_ENCODER_OUTPUT = "EMBEDDING"
TEXT_EMBEDDING_DIM = 384
# The text encoder's max_batch_size (config.pbtxt); larger lists are sent in chunks.
TEXT_ENCODER_MAX_BATCH = 256

# gRPC codes worth retrying: the server is down, restarting, overloaded or slow.
RETRYABLE_STATUSES = frozenset(
    {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}
)
# gRPC codes that mean the request itself is wrong.
INVALID_STATUSES = frozenset(
    {"StatusCode.INVALID_ARGUMENT", "StatusCode.OUT_OF_RANGE", "StatusCode.FAILED_PRECONDITION"}
)


class TritonError(Exception):
    """Base of every error raised by ``TritonClient``."""


class TritonUnavailable(TritonError):
    """Recoverable: Triton unreachable or too slow after all retries. Back off, retry later."""


class TritonRequestInvalid(TritonError):
    """The server rejected this input; retrying cannot help. Dead-letter the event."""


class TritonServerError(TritonError):
    """The server failed for another reason (model not loaded, model crashed)."""


@dataclass(frozen=True)
class RetryPolicy(Backoff):
    """How often to retry an unavailable Triton, on catstream's one back-off schedule."""

    retries: int = 5


def classify(error: BaseException) -> type[TritonError]:
    """Which ``TritonError`` class a failed call maps to (``TritonUnavailable`` = retry)."""
    if isinstance(error, InferenceServerException):
        status = str(error.status())
        if status in RETRYABLE_STATUSES:
            return TritonUnavailable
        if status in INVALID_STATUSES:
            return TritonRequestInvalid
        return TritonServerError
    if isinstance(error, ConnectionError | TimeoutError | OSError):
        return TritonUnavailable
    return TritonServerError


def describe(error: BaseException) -> str:
    """A one-line description of a tritonclient or socket error."""
    if isinstance(error, InferenceServerException):
        return f"{error.status()}: {error.message()}"
    return f"{type(error).__name__}: {error}"


class InferAnswer(dict[str, npt.NDArray[Any]]):
    """An inference's outputs by name, and the model version that answered."""

    model_version: str = ""


class TritonClient:
    """Async gRPC client for one Triton server. Create inside or outside a loop; close it."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 10.0,
        retries: int = 5,
        *,
        text_encoder_model: str = "text_encoder",
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy(retries=retries)
        self.text_encoder_model = text_encoder_model
        self._rng = rng or random.Random()
        # Created on first use: a grpc.aio channel binds to the running event loop.
        self._client: grpc_aio.InferenceServerClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonClient:
        return cls(
            settings.triton_grpc_url,
            timeout_s=settings.triton_timeout_s,
            retries=settings.triton_retries,
            text_encoder_model=settings.text_encoder_model,
        )

    def _grpc(self) -> grpc_aio.InferenceServerClient:
        if self._client is None:
            self._client = grpc_aio.InferenceServerClient(self.url)
        return self._client

    async def infer(
        self,
        model_name: str,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str],
        model_version: str = "",
        parameters: Mapping[str, int | str] | None = None,
    ) -> InferAnswer:
        """Run one inference; returns ``{output name: array}`` and the version that answered.

        ``parameters`` are the request's parameters (the model reads them, e.g. the
        categoriser version ``product_pipeline`` is to score with).

        BYTES inputs are ``np.object_`` arrays of ``bytes``. Retries only
        unavailable/timeout/connection failures; see the module docstring.
        """
        infer_inputs = [_infer_input(name, array) for name, array in inputs.items()]
        requested = [grpc_client.InferRequestedOutput(name) for name in outputs]
        last_error: BaseException | None = None
        for attempt in range(self.policy.retries + 1):
            if attempt:
                delay = self.policy.delay_s(attempt - 1, self._rng)
                log.warning(
                    "triton_retry",
                    model=model_name,
                    url=self.url,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=describe(last_error) if last_error else None,
                )
                await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                result = await self._grpc().infer(
                    model_name,
                    infer_inputs,
                    model_version=model_version,
                    outputs=requested,
                    client_timeout=self.timeout_s,
                    parameters=dict(parameters) if parameters else None,
                )
            except (InferenceServerException, OSError) as exc:
                TRITON_ERRORS.labels(model_name).inc()
                error_class = classify(exc)
                if error_class is not TritonUnavailable:
                    raise self._final_error(error_class, model_name, exc) from exc
                last_error = exc
                continue
            TRITON_SECONDS.labels(model_name).observe(time.perf_counter() - started)
            answer = InferAnswer({name: result.as_numpy(name) for name in outputs})
            answer.model_version = result.get_response().model_version
            return answer
        assert last_error is not None  # the loop ran at least once and every attempt failed
        raise self._final_error(TritonUnavailable, model_name, last_error) from last_error

    def _final_error(
        self, error_class: type[TritonError], model_name: str, exc: BaseException
    ) -> TritonError:
        detail = describe(exc)
        if error_class is TritonUnavailable:
            return TritonUnavailable(
                f"Triton at {self.url} did not answer model {model_name!r} after "
                f"{self.policy.retries + 1} attempts ({detail}); check it is up "
                "(`catstream stack status`) or point CATSTREAM_TRITON_GRPC_URL at a live server"
            )
        if error_class is TritonRequestInvalid:
            return TritonRequestInvalid(
                f"Triton rejected the input to model {model_name!r} ({detail}); "
                "fix or dead-letter this input, retrying will not help"
            )
        return TritonServerError(
            f"Triton failed model {model_name!r} at {self.url} ({detail}); check the model is "
            "loaded and read the tritonserver log"
        )

    async def embed_texts(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """L2-normalised all-MiniLM-L6-v2 embeddings, shape ``(len(texts), 384)``."""
        if not texts:
            return np.zeros((0, TEXT_EMBEDDING_DIM), dtype=np.float32)
        chunks = [
            texts[start : start + TEXT_ENCODER_MAX_BATCH]
            for start in range(0, len(texts), TEXT_ENCODER_MAX_BATCH)
        ]
        # Sent concurrently: Triton's dynamic batcher overlaps them on the server.
        results = await asyncio.gather(*(self._embed_chunk(chunk) for chunk in chunks))
        return np.concatenate(results, axis=0)

    async def _embed_chunk(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = np.array([[text.encode("utf-8")] for text in texts], dtype=np.object_)
        result = await self.infer(
            self.text_encoder_model, {TEXT_ENCODER_INPUT: rows}, [TEXT_ENCODER_OUTPUT]
        )
        return result[TEXT_ENCODER_OUTPUT].astype(np.float32, copy=False)

    async def is_ready(self, model_name: str | None = None) -> bool:
        """True when the server (and ``model_name``, if given) is ready. Never raises."""
        try:
            client = self._grpc()
            if not await client.is_server_ready(client_timeout=self.timeout_s):
                return False
            if model_name is None:
                return True
            return bool(await client.is_model_ready(model_name, client_timeout=self.timeout_s))
        except (InferenceServerException, OSError) as exc:
            log.info("triton_not_ready", url=self.url, model=model_name, error=describe(exc))
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> TritonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _infer_input(name: str, array: npt.NDArray[Any]) -> grpc_client.InferInput:
    infer_input = grpc_client.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    infer_input.set_data_from_numpy(array)
    return infer_input
