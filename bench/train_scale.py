"""Issue 9's scale bar: ``catstream train`` on 20,000 labels over 1,000 leaves.

The labels are made by ``feeds.product_maker`` (title, brand, an HTML description)
over leaves of the Google taxonomy sampled with a fixed seed, 20 per leaf; their
titles are easy, so this measures cost (wall, CPU, peak RSS of the whole command),
not accuracy. ``catstream train`` runs as a child process, as a user runs it.

The maker's descriptions come from a few fixed sentences, a vocabulary no real
catalogue has. With ``--descriptions long`` (the default) each also gets a
500-character text of Zipf-distributed pseudo-words (50,000 of them, exponent
1.1), whose word 1-2-grams number about 500,000 over 20,000 products: what
500-character windows of real English text gave (414,000), rounded up. That is
what a catalogue with real descriptions costs in memory and model size.

    python -m bench.train_scale [--leaves 1000] [--per-leaf 20] [--descriptions long|maker]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.dev_benchmark import ROOT
from catstream.taxonomy import Taxonomy
from feeds import catalogue_words
from feeds.product_maker import MadeProduct, fill_product

TAXONOMY = ROOT.parent / "shared" / "data" / "google_product_taxonomy.en-US.txt"
CATEGORISER_CONFIG = ROOT / "triton_models" / "repository" / "categoriser"
LABEL_FIELDS = ("product_id", "title", "description", "brand")


@dataclass(frozen=True)
class TrainScale:
    labels: int
    leaves: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    network_mib: float  # the exported version's network.pt
    exit_code: int
    output_tail: str

    def table(self) -> str:
        return "\n".join(
            [
                f"| labels × leaves | {self.labels:,} × {self.leaves:,} |",
                f"| wall | {self.wall_s:.0f} s |",
                f"| CPU (user + system) | {self.cpu_s:.0f} s |",
                f"| peak RSS | {self.peak_rss_mib:,.0f} MiB |",
                f"| network.pt | {self.network_mib:,.0f} MiB |",
            ]
        )


LONG_TEXT_CHARS = 500
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "do", "gra", "tel", "mon",
              "fis", "bar", "qu", "zen", "lin", "hor", "set")  # fmt: skip


class LongText:
    """Deterministic Zipf-distributed pseudo-word text, as long and as varied as real copy."""

    def __init__(self, words: int = 50_000, exponent: float = 1.1, seed: int = 0) -> None:
        rng = random.Random(seed)
        vocabulary: set[str] = set()
        while len(vocabulary) < words:
            vocabulary.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
        self.words = sorted(vocabulary)
        weights = np.arange(1, words + 1, dtype=np.float64) ** -exponent
        self.p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def next(self) -> str:
        picked = self.rng.choice(len(self.words), size=LONG_TEXT_CHARS // 4, p=self.p)
        return " ".join(self.words[i] for i in picked)[:LONG_TEXT_CHARS]


def write_labels(
    path: Path, taxonomy: Taxonomy, leaves: int, per_leaf: int, long: bool = True
) -> int:
    """``leaves`` × ``per_leaf`` labelled products as JSON lines; returns how many."""
    rng = random.Random(0)
    text = LongText() if long else None
    chosen = sorted(rng.sample(taxonomy.leaves(), leaves))
    locale = next(iter(catalogue_words.LOCALES))
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for leaf in chosen:
            for _ in range(per_leaf):
                made = MadeProduct(
                    product_id=f"s{n}",
                    ordinal=n,
                    category_id=leaf,
                    category_path=taxonomy.path(leaf),
                    locale=locale,
                )
                fill_product(rng, made, None)
                row = {k: v for k, v in made.fields.items() if k in LABEL_FIELDS}
                row["category"] = taxonomy.path_str(leaf)
                if text is not None:
                    row["description"] = f"{row.get('description', '')} {text.next()}".strip()
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def run_train_scale(workdir: Path, leaves: int, per_leaf: int, long: bool = True) -> TrainScale:
    taxonomy = Taxonomy.load(TAXONOMY)
    labels = workdir / "labels.jsonl"
    n = write_labels(labels, taxonomy, leaves, per_leaf, long)
    repository = workdir / "repository"
    shutil.copytree(CATEGORISER_CONFIG, repository / "categoriser", dirs_exist_ok=True)
    command = [
        sys.executable, "-m", "catstream.cli", "train", "--labels", str(labels),
        "--taxonomy", str(TAXONOMY), "--model", "linear", "--model-repository",
        str(repository), "--no-load", "--quiet",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    network = repository / "categoriser" / "1" / "network.pt"
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return TrainScale(
        labels=n,
        leaves=leaves,
        wall_s=round(wall, 1),
        cpu_s=round(cpu, 1),
        peak_rss_mib=round(after.ru_maxrss / 1024, 1),  # Linux: KiB, the largest child
        network_mib=round(network.stat().st_size / 2**20, 1) if network.is_file() else 0.0,
        exit_code=done.returncode,
        output_tail=(done.stdout + done.stderr)[-2000:],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1000)
    parser.add_argument("--per-leaf", type=int, default=20)
    parser.add_argument("--descriptions", choices=("long", "maker"), default="long")
    parser.add_argument("--workdir", type=Path, default=Path("bench-results/train-scale"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = run_train_scale(args.workdir, args.leaves, args.per_leaf, args.descriptions == "long")
    print(report.output_tail)
    print(report.table())
    (args.workdir / "train-scale.json").write_text(json.dumps(asdict(report), indent=2))
    return report.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
