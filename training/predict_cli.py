"""``catstream predict --input products.jsonl --output predictions.jsonl``.

Runs every product through the stream's normaliser and the Triton models the
stream uses (``image_encoder`` for the first image unless ``--no-images``, then
``categoriser`` pinned to the served version, or ``--version``), and writes one
``products.predictions`` event (``schemas.events.Prediction``) per line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from catstream.settings import Settings
from catstream.taxonomy import TaxonomyError
from normaliser import fingerprint
from training.labels import LabelsError, read_products
from training.offline import normalise_lines, predict_products
from triton_models.categoriser.client import to_prediction
from triton_models.categoriser.metadata import (
    ModelVersionError,
    load_metadata,
    version_taxonomy,
)


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="products, JSON lines")
    parser.add_argument("--output", type=Path, required=True, help="prediction events, JSON lines")
    parser.add_argument(
        "--taxonomy", type=Path, help="default: the one the version carries (must match it)"
    )
    parser.add_argument("--version", type=int, help="categoriser version (default: served)")
    parser.add_argument("--no-images", action="store_true", help="categorise from text only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        metadata = load_metadata(settings.model_repository, args.version)
        taxonomy = version_taxonomy(settings.model_repository, metadata, args.taxonomy)
        lines = read_products(args.input)
        products = normalise_lines([(f"{item.source}:{item.line}", item.fields) for item in lines])
    except (TaxonomyError, LabelsError, ModelVersionError) as exc:
        print(f"catstream predict: {exc}", file=sys.stderr)
        return 2
    products = [
        p.model_copy(
            update={"fingerprint": p.fingerprint or fingerprint(p, settings.categorisation_fields)}
        )
        for p in products
    ]
    outputs, failed = predict_products(
        settings, products, metadata, images=not args.no_images, progress=not args.quiet
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    accepted = 0
    with args.output.open("w", encoding="utf-8") as handle:
        for product, output, image_failed in zip(products, outputs, failed, strict=True):
            event = to_prediction(
                product,
                output,
                metadata,
                taxonomy,
                image_failed=image_failed,
                model_name=settings.categoriser_model,
            )
            accepted += bool(event.categories)
            handle.write(event.model_dump_json() + "\n")
    print(
        f"wrote {len(products)} predictions to {args.output} "
        f"(version {metadata.version}; {accepted} with an accepted category)"
    )
    return 0
