"""Zero-shot accuracy on the development set: no labels, its own category paths as the taxonomy.

    python -m bench.zero_shot_dev [--data ../shared/data/amazon_uk_toys.jsonl] [--limit N]

Builds the zero-shot categoriser (``training.zero_shot``) over the plain taxonomy of
the dev set's category paths and scores every product in-process with the code
Triton runs (``PriorNetwork`` + ``score_logits``). Products are read from title and
brand only: their category is the answer. Prints leaf and level-1 accuracy of the
best leaf, and the served coverage and precision (leaf or ancestor) at the
configured threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from catstream.settings import PROJECT_ROOT
from catstream.taxonomy import Taxonomy
from training.zero_shot import ZeroShotConfig, build_zero_shot
from triton_models.categoriser.encoder import shared_encoder
from triton_models.categoriser.features import ProductFields
from triton_models.categoriser.scoring import score_logits

DEV_SET = PROJECT_ROOT.parent / "shared" / "data" / "amazon_uk_toys.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_SET)
    parser.add_argument("--limit", type=int, help="only the first N products (a smoke run)")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines()]
    taxonomy = Taxonomy.from_lines(sorted({r["category"] for r in rows}), source=str(args.data))
    rows = rows[: args.limit] if args.limit else rows
    encoder = shared_encoder()
    config = ZeroShotConfig()
    model = build_zero_shot(taxonomy, encoder, config)
    text = encoder.encode_products(
        [ProductFields(title=r["title"] or "", brand=r.get("brand") or "") for r in rows]
    )
    n = len(rows)
    with torch.inference_mode():
        independent, exclusive = model.network(
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0),
            torch.from_numpy(text),
            torch.zeros(n, 1280),
            torch.zeros(n),
        )
    scored = score_logits(model.space, model.scoring, independent.numpy(), exclusive.numpy())
    truth = [taxonomy.by_path(r["category"]) for r in rows]
    top = [int(t) for t in scored.decision.top_ids[:, 0]]
    leaf = np.mean([a == b for a, b in zip(top, truth, strict=True)])
    level1 = np.mean(
        [taxonomy.ancestors_and_self(a)[0] == taxonomy.ancestors_and_self(b)[0]
         for a, b in zip(top, truth, strict=True)]
    )  # fmt: skip
    served = [int(p) for p in scored.decision.predicted]
    answered = [(p, t) for p, t in zip(served, truth, strict=True) if p >= 0]
    right = sum(p in taxonomy.ancestors_and_self(t) for p, t in answered)
    exact = sum(p == t for p, t in answered)
    print(
        f"zero-shot on {n} products, {len(taxonomy)} categories ({len(taxonomy.leaves())} leaves),"
        f" {config.to_dict()}\n"
        f"  best leaf = true leaf   : {leaf:.3f}\n"
        f"  its level 1 = true one  : {level1:.3f}\n"
        f"  served (coverage)       : {len(answered) / n:.3f}\n"
        f"  served leaf or ancestor : {right / max(len(answered), 1):.3f} of those served\n"
        f"  served the true leaf    : {exact / n:.3f} of all"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
