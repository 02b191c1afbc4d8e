"""Issue 9's training-scale benchmark (``make bench``; skipped by default): bench/train_scale.py.

``catstream train`` as a child process on product_maker labels: 100 leaves × 10 at test
size, 1,000 × 20 (the issue's 20,000 × 1,000, about 6 min on two free cores) with
``CATSTREAM_BENCH_FULL=1``, each with a 500-character description of varied text.
Asserts what holds whatever the machine: the command succeeded and its costs were
measured, and at full size the issue's memory bar (4 GiB); bench/README.md reports the
figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.dev_benchmark import ROOT
from bench.train_scale import run_train_scale

FULL = os.environ.get("CATSTREAM_BENCH_FULL") == "1"


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_train_scale_benchmark(tmp_path: Path) -> None:
    leaves, per_leaf = (1000, 20) if FULL else (100, 10)
    report = run_train_scale(tmp_path, leaves, per_leaf)
    out = ROOT / "bench-results" / "train_scale.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(report), indent=1))
    print("\n" + report.table())
    assert report.exit_code == 0, report.output_tail
    assert report.labels == leaves * per_leaf
    assert report.cpu_s > 0
    assert report.peak_rss_mib > 0
    assert (tmp_path / "repository" / "categoriser" / "1" / "network.pt").is_file()
    if FULL:
        assert report.peak_rss_mib <= 4096, report.table()
