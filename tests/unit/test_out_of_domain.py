"""Issue 9, section 4: trained on three top-level branches of the dev set, the products of
the other branches go to review (at least 90%), never confidently wrong.

Short: a quarter of each side of the dev split (real data from ../shared/data, real
MiniLM), trained as ``catstream train`` does (linear model, cross-fitted thresholds, the
zero-shot prior kept for the categories without labels) and served by ``Predictor``, the
code Triton runs. The full-size run is bench/dev_benchmark.py's ``out_of_domain``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.dev_benchmark import CONFIG, DEFAULT_DATA, IN_DOMAIN_BRANCHES, dev_split
from catstream.taxonomy import Taxonomy
from streams.review import needs_review, uncertainty
from training.dataset import product_fields
from training.evaluate_cli import served_metrics
from training.examples import load_training_set
from training.linear import LinearTrainConfig
from training.linear_run import export_linear, fit_linear
from training.offline import normalise_lines
from training.unlabelled_prior import attach_prior
from triton_models.categoriser.encoder import shared_encoder
from triton_models.categoriser.serving import Predictor

EVERY = 4  # a quarter of the products keeps the test short


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def test_products_of_other_branches_go_to_review(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DEFAULT_DATA.read_text(encoding="utf-8").splitlines()]
    train_rows, test_rows = dev_split(rows)
    taxonomy_file = tmp_path / "taxonomy.txt"
    taxonomy_file.write_text("\n".join(sorted({r["category"] for r in rows})) + "\n")
    taxonomy = Taxonomy.load(taxonomy_file)

    def inside(row: dict[str, Any]) -> bool:
        return str(row["category"]).split(" > ")[0] in IN_DOMAIN_BRANCHES

    _write(tmp_path / "inside.jsonl", [r for r in train_rows if inside(r)][::EVERY])
    others = [r for r in test_rows if not inside(r)][::EVERY]
    training = load_training_set(taxonomy, tmp_path / "inside.jsonl")
    encoder = shared_encoder()
    model, seen = fit_linear(training, taxonomy, encoder, LinearTrainConfig(), 0.95, progress=False)
    repository = tmp_path / "repository"
    (repository / "categoriser").mkdir(parents=True)
    shutil.copyfile(CONFIG, repository / "categoriser" / "config.pbtxt")
    prior = attach_prior(taxonomy, model.space, model.scoring, encoder)
    assert prior is not None  # the other branches' categories have no labels
    version = export_linear(
        model, taxonomy, repository, training, seen, prior.metadata, prior.files
    )

    products = normalise_lines(
        [
            (f"ood:{i}", {k: v for k, v in r.items() if k != "category"})
            for i, r in enumerate(others)
        ]
    )
    outputs = Predictor.load(version, encoder=encoder).predict(
        [product_fields(p) for p in products]
    )
    review = [
        needs_review("margin", uncertainty("margin", list(scores)), None, bool(predicted >= 0))
        for scores, predicted in zip(outputs.top_scores, outputs.predicted_id, strict=True)
    ]
    truth = [taxonomy.by_path(r["category"]) for r in others]
    served = [int(i) if i >= 0 else None for i in outputs.predicted_id]
    metrics = served_metrics(taxonomy, truth, served)
    assert len(others) > 250
    assert sum(review) / len(review) >= 0.9
    # What is served (by the prior, for categories without labels) is mostly right.
    assert metrics["served_share"] < 0.1
    if metrics["served_share"] > 0.02:
        assert metrics["served_precision"] >= 0.5
