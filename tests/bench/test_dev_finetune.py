"""The fine-tuning benchmark (``make bench``; skipped by default): bench/dev_finetune.py.

Fine-tunes MiniLM on four fifths of the development set's training split (the fifth left
chooses epochs and fusion weight), about 30-60 minutes of 2-core CPU; writes
``bench-results/dev_finetune.json``.
Asserts what holds whatever the machine: the epochs and fusion weight were chosen on
validation, every accuracy is a share, and the costs were measured.
"""

from __future__ import annotations

import argparse
import json

import pytest

from bench.dev_benchmark import DEFAULT_DATA, ROOT
from bench.dev_finetune import ALPHAS, run


@pytest.mark.bench
@pytest.mark.timeout(7200)
def test_dev_finetune_benchmark() -> None:
    args = argparse.Namespace(epochs=3, max_len=64, batch=32, threads=2, cache=None, refit=False)
    results = run(DEFAULT_DATA, args)
    out = ROOT / "bench-results" / "dev_finetune.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True))
    chosen = results["validation"]["chosen"]
    assert 1 <= chosen["epochs"] <= 3
    assert chosen["alpha"] in ALPHAS
    assert all(0.0 <= value <= 1.0 for value in results["test"].values())
    assert results["split"] == {"train": 6343, "test": 2716, "classes": 118}
    assert results["cost"]["finetune_cpu_s"] > 0
    assert results["cost"]["peak_rss_mib"] > 0
