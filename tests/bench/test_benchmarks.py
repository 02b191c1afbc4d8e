"""The benchmarks at test size (``make bench`` = ``pytest -m bench``; skipped by default).

Each runs the real benchmark on the session's local stack with small sizes and
asserts only that it measured something sane (every product accounted for, rates
above zero); the numbers are printed (``-s``) and written under bench-results/.
``CATSTREAM_BENCH_FULL=1`` runs the full sizes (20,000 raw events; 2,000 products
through the pipeline), which is what bench/README.md reports.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.normalise_bench import RESULTS_DIR, run_normalise_bench, write_json
from bench.pipeline_bench import PipelineOptions, run_pipeline_bench
from catstream.settings import Settings

FULL = os.environ.get("CATSTREAM_BENCH_FULL") == "1"


@pytest.mark.bench
@pytest.mark.timeout(1800)
def test_normalise_bench(stack: Settings, tmp_path: Path) -> None:
    products = 20_000 if FULL else 1_000
    report = run_normalise_bench(stack, tmp_path, products)
    write_json(asdict(report), RESULTS_DIR / "test-normalise.json")
    print("\n" + report.table())

    assert report.published == products
    assert all(c.messages == products and c.msgs_per_s > 0 for c in report.broker_consume)
    assert report.in_process.events == products
    through = report.through_broker
    assert through.normalised + through.dead_letters == products  # nothing lost, nothing stale
    assert through.events_per_s > 0
    assert through.events_per_worker_cpu_s > 0


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_pipeline_bench(stack: Settings, tmp_path: Path) -> None:
    options = (
        PipelineOptions()
        if FULL
        else PipelineOptions(
            products=200, latency_products=40, naive_products=10, ceiling_batches=(64,)
        )
    )
    report = run_pipeline_bench(stack, tmp_path, options)
    write_json(asdict(report), RESULTS_DIR / "test-pipeline.json")
    print("\n" + report.table())

    # run_phase only returns once both stores hold every product and no group lags.
    assert report.end_to_end.products > 0.8 * options.products  # the feed has duplicates
    assert report.end_to_end.products_per_s > 0
    assert report.republish.products == report.end_to_end.products
    assert report.republish.products_per_s > 0
    assert report.latency.products > 0.8 * options.latency_products
    assert 0 < report.latency.p50_ms <= report.latency.p99_ms
    # publish → normalised is the first hop of publish → prediction
    assert 0 <= report.latency.normalised_p50_ms <= report.latency.p50_ms
    assert report.latency_goal_ms() > 2 * stack.batch_max_wait_ms
    assert all(run.products == report.end_to_end.products for run in report.ceiling)
    assert report.naive.products == options.naive_products
    assert report.ratio_to_ceiling > 0
    assert report.ratio_to_naive > 0
    names = {peak.name.split()[0] for peak in report.peaks}  # "worker --instance-id …"
    assert {"worker", "noida", "triton", "milvus"} <= names
    assert all(peak.peak_rss_mib > 0 for peak in report.peaks)


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_dev_set_categoriser_vs_linear_svc(tmp_path: Path) -> None:
    """Issue 9's table on the development set (no stack: both run in-process, as served)."""
    import json

    from bench.dev_benchmark import DEFAULT_DATA, format_results, run

    results = run(DEFAULT_DATA, 0.95, tmp_path)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "dev-categoriser.json").write_text(json.dumps(results, indent=1))
    print("\n" + format_results(results))
    assert results["split"] == {"train": 6343, "test": 2716}
    catstream, svc = results["catstream"], results["linear_svc"]
    assert svc["leaf_accuracy"] > 0.7  # the reference reaches 0.791
    assert catstream["leaf_accuracy"] > svc["leaf_accuracy"]
    assert catstream["served_precision"] >= 0.95
    assert results["out_of_domain"]["to_review"] >= 0.9
