"""An ONNX Runtime session as the text and image encoders run theirs.

Both bound the intra-op threads, keep them from spinning, optimise the whole graph and
skip a provider the installed onnxruntime lacks (CUDA on a CPU wheel), never failing on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CPU_PROVIDERS = ["CPUExecutionProvider"]


def onnx_session(
    onnx_path: Path, threads: int | None, providers: Sequence[str], *, spin_wait: bool = False
) -> Any:
    """``onnxruntime.InferenceSession`` over ``onnx_path``.

    ``threads`` bounds the intra-op threads (``None``: ONNX Runtime's default, one per
    core). ``spin_wait`` lets idle intra-op threads spin before they sleep, ONNX Runtime's
    own default. On a host whose cores are shared (worker, broker, sinks, other models)
    that spin is CPU taken from the rest: beside two busy processes it cost the image
    encoder 16 instead of 12 ms of CPU per image, and MiniLM 20 instead of 12 ms a call at
    batch 2, with no gain in speed (bench/README, session 19).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    usable = [name for name in providers if name in ort.get_available_providers()]
    return ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=usable or CPU_PROVIDERS
    )
