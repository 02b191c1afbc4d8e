"""The categoriser on the real local Triton: train → export → load → predict, and rollback.

A small stand-in catalogue (12 products per leaf, few epochs) keeps this quick;
quality is measured by the benchmark, not here.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.retail_standin import TAXONOMY, make_catalogue, write_jsonl
from catstream.cli import main
from catstream.settings import Settings
from schemas.events import Prediction
from training.dataset import product_fields
from training.offline import normalise_lines
from triton_models.categoriser.client import categorise, image_inputs
from triton_models.categoriser.contract import (
    OUTPUTS,
    ImageEmbeddings,
    categorise_with_images,
    request_inputs,
)
from triton_models.categoriser.contract import categorise as categorise_batch
from triton_models.categoriser.metadata import (
    load_metadata,
    model_dir,
    served_version,
    version_dirs,
)
from triton_models.categoriser.model_control import triton_model_state
from triton_models.categoriser.serving import Predictor
from triton_models.triton_client import TritonClient


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("catalogue")
    rows = make_catalogue(per_leaf=12, seed=3)
    (root / "taxonomy.txt").write_text(TAXONOMY)
    write_jsonl(root / "train.jsonl", rows[:170])
    write_jsonl(root / "test.jsonl", rows[170:])
    return {"taxonomy": root / "taxonomy.txt", "train": root / "train.jsonl",
            "test": root / "test.jsonl"}  # fmt: skip


def run_train(catalogue: dict[str, Path], seed: int, *extra: str) -> int:
    code = main(
        [
            "train",
            "--taxonomy", str(catalogue["taxonomy"]),
            "--labels", str(catalogue["train"]),
            "--seed", str(seed),
            "--epochs", "6",
            "--quiet",
            *extra,
        ]
    )  # fmt: skip
    assert code == 0
    return 0


@pytest.fixture(scope="module")
def trained(stack: Settings, catalogue: dict[str, Path]) -> int:
    """A version trained with `catstream train` and loaded into the stack's Triton."""
    run_train(catalogue, seed=1)
    version = max(version_dirs(stack.model_repository))
    assert served_version(stack.model_repository) == version
    return version


def test_triton_scores_match_in_process_scores(
    stack: Settings, catalogue: dict[str, Path], trained: int
) -> None:
    lines = [json.loads(line) for line in catalogue["test"].read_text().splitlines()]
    products = normalise_lines([(f"test:{i}", row) for i, row in enumerate(lines[:40])])
    rng = np.random.default_rng(0)
    images = rng.normal(size=(len(products), 1280)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    images[::2] = 0.0  # every other product has no image
    metadata = load_metadata(stack.model_repository, trained)

    async def through_triton() -> list[Any]:
        client = TritonClient.from_settings(stack)
        try:
            return await categorise(client, products, images, metadata, outputs=OUTPUTS)
        finally:
            await client.close()

    remote = asyncio.run(through_triton())
    predictor = Predictor.load(model_dir(stack.model_repository) / str(trained))
    mask = (np.abs(images).sum(axis=1) > 0).astype(np.float32)
    local = predictor.predict([product_fields(p) for p in products], images, mask)
    probabilities = np.stack([r.probabilities for r in remote])
    assert probabilities.shape == local.probabilities.shape
    assert np.abs(probabilities - local.probabilities).max() < 1e-4
    assert np.abs(np.array([r.top_scores for r in remote]) - local.top_scores).max() < 1e-4
    assert np.abs(np.stack([r.path_scores for r in remote]) - local.path_scores).max() < 1e-4
    assert [r.top_ids for r in remote] == local.top_ids.tolist()
    assert [r.predicted_id if r.predicted_id is not None else -1 for r in remote] == (
        local.predicted_id.tolist()
    )
    embeddings = np.array([r.text_embedding for r in remote])
    assert np.abs(embeddings - local.text_embedding).max() < 1e-4
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)


def test_predict_cli_writes_prediction_events(
    stack: Settings, catalogue: dict[str, Path], trained: int, tmp_path: Path
) -> None:
    output = tmp_path / "predictions.jsonl"
    code = main(
        [
            "predict",
            "--input", str(catalogue["test"]),
            "--output", str(output),
            "--taxonomy", str(catalogue["taxonomy"]),
            "--version", str(trained),
            "--no-images",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    events = [Prediction.model_validate_json(line) for line in output.read_text().splitlines()]
    assert len(events) == len(catalogue["test"].read_text().splitlines())
    for event in events:
        assert event.model_version == str(trained)
        levels = [c.level for c in event.categories]
        assert levels == list(range(1, len(levels) + 1))  # root → leaf, no gaps
        scores = [c.score for c in event.categories]
        assert scores == sorted(scores, reverse=True)  # a parent scores at least its child


def test_evaluate_cli_reports_catstream_and_baselines(
    stack: Settings, catalogue: dict[str, Path], trained: int, tmp_path: Path
) -> None:
    report = tmp_path / "metrics.json"
    code = main(
        [
            "evaluate",
            "--labels", str(catalogue["test"]),
            "--version", str(trained),
            "--json", str(report),
            "--no-images",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads(report.read_text())
    assert {"catstream", "catstream@thresholds", "tfidf_lr"} <= set(results)
    assert results["catstream"]["n"] == results["tfidf_lr"]["n"]
    assert 0.0 <= results["catstream"]["leaf_accuracy"] <= 1.0


def test_rollback_serves_the_previous_version(
    stack: Settings, catalogue: dict[str, Path], trained: int
) -> None:
    run_train(catalogue, 2, "--no-load")
    newer = max(version_dirs(stack.model_repository))
    assert newer > trained
    assert served_version(stack.model_repository) == trained  # --no-load changed nothing

    assert main(["model", "load", str(newer)]) == 0
    assert served_version(stack.model_repository) == newer
    states = triton_model_state(stack)
    assert states[newer] == "READY"
    assert states[trained] == "READY"  # kept loaded for an instant rollback

    assert main(["model", "rollback"]) == 0
    assert served_version(stack.model_repository) == trained
    states = triton_model_state(stack)
    assert states[trained] == "READY"
    assert states.get(newer) != "READY"
    assert main(["model", "list"]) == 0


def test_bad_input_is_invalid_argument_not_internal(
    stack: Settings, catalogue: dict[str, Path], trained: int
) -> None:
    """A title that is not UTF-8 gets INVALID_ARG, so the stream dead-letters the product
    instead of retrying the batch forever (a plain TritonError is INTERNAL)."""
    from triton_models.triton_client import TritonRequestInvalid

    products = normalise_lines([("bad", {"product_id": "bad-1", "title": "a lamp"})])
    images = image_inputs(1, None)
    inputs = request_inputs(products, images)
    inputs["TITLE"] = np.array([[b"\xff\xfe not utf-8"]], dtype=np.object_)

    async def call() -> None:
        client = TritonClient.from_settings(stack)
        try:
            await client.infer("categoriser", inputs, OUTPUTS, model_version=str(trained))
        finally:
            await client.close()

    with pytest.raises(TritonRequestInvalid):
        asyncio.run(call())


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (200, 160), colour)
    ImageDraw.Draw(image).ellipse((40, 30, 150, 130), fill=(250 - colour[0], 90, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def test_product_pipeline_answers_as_the_two_direct_calls(
    stack: Settings, catalogue: dict[str, Path], trained: int
) -> None:
    """One product_pipeline request = image_encoder, then the pinned categoriser version."""
    lines = [json.loads(line) for line in catalogue["test"].read_text().splitlines()]
    products = normalise_lines([(f"pipe:{i}", row) for i, row in enumerate(lines[:6])])
    images: list[bytes | None] = [_jpeg((200, 20, 20)), None, b"not an image", _jpeg((20, 180, 40))]
    images += [None, _jpeg((30, 30, 220))]

    async def both() -> tuple[Any, Any, Any, Any]:
        client = TritonClient.from_settings(stack)
        try:
            piped = await categorise_with_images(
                client, "product_pipeline", trained, products, images, OUTPUTS
            )
            rows = np.array([[data or b""] for data in images], dtype=np.object_)
            encoded = await client.infer("image_encoder", {"IMAGE": rows}, ["EMBEDDING", "OK"])
            ok = encoded["OK"].reshape(-1, 1).astype(np.float32)
            direct_images = ImageEmbeddings(encoded["EMBEDDING"], ok, [False] * len(images))
            direct = await categorise_batch(
                client, "categoriser", trained, products, direct_images, OUTPUTS
            )
            return piped[0], piped[1], direct, direct_images
        finally:
            await client.close()

    piped, piped_images, direct, direct_images = asyncio.run(both())
    assert piped_images.failed == [False, False, True, False, False, False]
    assert piped_images.mask.reshape(-1).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert np.abs(piped_images.vectors - direct_images.vectors).max() < 1e-5
    for one, other in zip(piped, direct, strict=True):
        assert one.top_ids == other.top_ids
        assert one.predicted_id == other.predicted_id
        assert np.abs(np.array(one.top_scores) - other.top_scores).max() < 1e-5
        assert one.probabilities is not None
        assert other.probabilities is not None
        assert np.abs(one.probabilities - other.probabilities).max() < 1e-5
        assert np.abs(one.text_embedding - other.text_embedding).max() < 1e-5


def test_product_pipeline_scores_only_with_the_version_it_is_given(
    stack: Settings, trained: int
) -> None:
    """No version or one Triton does not serve is an error, never "latest": the worker
    reads the scores with its own version's label map."""
    from triton_models.triton_client import TritonRequestInvalid, TritonServerError

    products = normalise_lines([("v", {"product_id": "v-1", "title": "a wooden train set"})])
    rows = request_inputs(products, None)
    rows["IMAGE"] = np.array([[b""]], dtype=np.object_)

    async def call(parameters: dict[str, int | str] | None) -> None:
        client = TritonClient.from_settings(stack)
        try:
            await client.infer("product_pipeline", rows, ["TOP_IDS"], parameters=parameters)
        finally:
            await client.close()

    with pytest.raises(TritonRequestInvalid, match="categoriser_version"):
        asyncio.run(call(None))
    with pytest.raises(TritonServerError, match="categoriser"):
        asyncio.run(call({"categoriser_version": trained + 1000}))
    asyncio.run(call({"categoriser_version": trained}))
