"""The image encoder served by the real tritonserver of the local stack.

Triton's embeddings must equal the in-process torch reference (within 1e-4
cosine distance), an undecodable image must come back with ``OK=false`` and a
zero embedding while the rest of its batch succeeds, and requests sent at once
must be merged by the dynamic batcher without changing any answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc.aio as grpc_aio

from catstream.settings import Settings
from tests.unit.test_images import synthetic_images
from triton_models.image_encoder import EMBEDDING_DIM, ImageEncoder
from triton_models.triton_client import TritonClient

IMAGE_INPUT = "IMAGE"
OUTPUTS = ["EMBEDDING", "OK"]


@pytest.fixture(scope="module")
def reference() -> ImageEncoder:
    """The torch encoder in-process: what Triton must reproduce."""
    return ImageEncoder("torch", num_threads=2)


@pytest.fixture
async def client(stack: Settings) -> AsyncIterator[TritonClient]:
    # A generous timeout: the shared 2-core test machine may be busy with other services.
    triton = TritonClient(stack.triton_grpc_url, timeout_s=60.0, retries=2)
    try:
        yield triton
    finally:
        await triton.close()


async def encode_remote(
    client: TritonClient, model: str, images: list[bytes]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    rows = np.array([[image] for image in images], dtype=np.object_)
    result = await client.infer(model, {IMAGE_INPUT: rows}, OUTPUTS)
    return result["EMBEDDING"], result["OK"].reshape(-1)


def cosine_distance(
    left: npt.NDArray[np.float32], right: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    left64, right64 = left.astype(np.float64), right.astype(np.float64)
    dots = np.sum(left64 * right64, axis=1)
    return np.asarray(
        1.0 - dots / (np.linalg.norm(left64, axis=1) * np.linalg.norm(right64, axis=1))
    )


async def test_embeddings_match_in_process_encoder(
    client: TritonClient, stack: Settings, reference: ImageEncoder
) -> None:
    images = synthetic_images(10)
    served, ok = await encode_remote(client, stack.image_encoder_model, images)
    expected, expected_ok = reference.encode_bytes(images)

    assert served.shape == (10, EMBEDDING_DIM)
    assert served.dtype == np.float32
    assert ok.tolist() == expected_ok.tolist() == [True] * 10
    distances = cosine_distance(served, expected)
    assert distances.max() < 1e-4, (
        f"image {int(np.argmax(distances))} is {distances.max():.2e} away"
    )
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


async def test_corrupt_image_fails_alone_in_its_batch(
    client: TritonClient, stack: Settings, reference: ImageEncoder
) -> None:
    good = synthetic_images(4)
    truncated_jpeg = good[0][:150]  # index 0 is a JPEG: a cut-off download
    images = [good[0], b"<html>not an image</html>", good[1], truncated_jpeg, b"", *good[2:]]

    served, ok = await encode_remote(client, stack.image_encoder_model, images)

    assert ok.tolist() == [True, False, True, False, False, True, True]
    assert not served[~ok].any(), "a failed image must get a zero embedding"
    expected, _ = reference.encode_bytes(good)
    assert cosine_distance(served[ok], expected).max() < 1e-4


async def _statistics(url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) Triton has counted for ``model`` so far."""
    admin = grpc_aio.InferenceServerClient(url)
    try:
        stats = await admin.get_inference_statistics(model, as_json=True)
    finally:
        await admin.close()
    model_stats = stats["model_stats"][0]
    return int(model_stats.get("inference_count", 0)), int(model_stats.get("execution_count", 0))


async def test_concurrent_requests_are_batched_and_a_bad_one_fails_alone(
    client: TritonClient, stack: Settings, reference: ImageEncoder
) -> None:
    images = synthetic_images(10)
    images[5] = b"\x89PNG\r\n\x1a\n garbage after a PNG signature"
    before = await _statistics(stack.triton_grpc_url, stack.image_encoder_model)

    # One request per image, all in flight at once: the dynamic batcher merges them.
    answers = await asyncio.gather(
        *(encode_remote(client, stack.image_encoder_model, [image]) for image in images)
    )

    after = await _statistics(stack.triton_grpc_url, stack.image_encoder_model)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences >= len(images)
    assert executions < inferences, f"{inferences} inferences ran in {executions} executions"

    ok = np.array([answer[1][0] for answer in answers])
    served = np.concatenate([answer[0] for answer in answers])
    assert ok.tolist() == [index != 5 for index in range(10)]
    expected, expected_ok = reference.encode_bytes(images)
    assert expected_ok.tolist() == ok.tolist()
    assert cosine_distance(served[ok], expected[ok]).max() < 1e-4
