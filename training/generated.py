"""Training a categoriser on generated ground truth, through the real ``catstream train``.

The end-to-end tests and the pipeline benchmark need *a* trained model before
they can stream; this makes one the way a user would: generate a labelled
feed (``catstream feed generate --labels-out``) and run ``catstream train`` on it,
which exports a version and loads it into the configured Triton.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from catstream.settings import Settings
from feeds.generator import GenerateOptions, generate_feed


def train_on_generated(
    settings: Settings, workdir: Path, products: int = 800, epochs: int = 8, seed: int = 101
) -> None:
    """Train and load a categoriser on ``products`` generated labelled products."""
    labels = workdir / "train-labels.jsonl"
    with labels.open("w") as truth:
        options = GenerateOptions(
            products=products,
            network="generic",
            seed=seed,
            fmt="jsonl",
            duplicate_fraction=0.0,
            update_fraction=0.0,
            taxonomy_path=settings.taxonomy_path,
        )
        generate_feed(options, io.BytesIO(), labels_out=truth)
    command = [
        sys.executable, "-m", "catstream.cli", "train", "--quiet",
        "--taxonomy", str(settings.taxonomy_path),
        "--labels", str(labels),
        "--epochs", str(epochs),
    ]  # fmt: skip
    env = {**os.environ, **settings.as_env()}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"catstream train failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
