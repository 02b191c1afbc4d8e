"""``catstream feed generate|publish``: write messy test feeds, publish feed files.

Examples::

    catstream feed generate --products 2000 --network awin --seed 1 --output feed.csv \\
        --corrupt-fraction 0.05 --labels-out labels.jsonl
    catstream feed publish feed.csv --network awin
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

from catstream.settings import Settings
from feeds.formats import FORMATS, FeedFormatError
from feeds.generator import GenerateOptions, generate_feed
from feeds.mapping import MappingError, available_networks
from feeds.publisher import PublishError, publish_feed

_SHOWN_SKIPPED = 20


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _add_generate(sub: Any) -> None:
    parser = sub.add_parser("generate", help="write a realistic, messy feed (deterministic)")
    parser.add_argument("--products", type=int, required=True, help="rows to write")
    parser.add_argument(
        "--network",
        required=True,
        help=f"network whose columns to use: {', '.join(available_networks())}",
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same feed (default 0)")
    parser.add_argument("--output", type=Path, help="feed file (default: stdout)")
    parser.add_argument("--format", choices=FORMATS, help="default: the network's usual format")
    parser.add_argument(
        "--corrupt-fraction",
        type=_fraction,
        default=0.05,
        help="share of broken rows (default 0.05; 0 for training data)",
    )
    parser.add_argument("--duplicate-fraction", type=_fraction, default=0.03)
    parser.add_argument(
        "--update-fraction",
        type=_fraction,
        default=0.06,
        help="share of rows updating an earlier product (half price-only)",
    )
    parser.add_argument("--image-base-url", help="image URLs become {base}/img/<n>.jpg")
    parser.add_argument(
        "--labels-out", type=Path, help="write the true category per product id (JSON lines)"
    )
    parser.add_argument("--taxonomy", type=Path, help="default: CATSTREAM_TAXONOMY_PATH")
    parser.add_argument("--mapping", type=Path, help="mapping file instead of the shipped one")
    parser.set_defaults(handler=_generate)


def _add_publish(sub: Any) -> None:
    parser = sub.add_parser("publish", help="publish a feed file to products.raw")
    parser.add_argument("path", type=Path, help="feed file (.csv, .tsv, .jsonl, .xml)")
    parser.add_argument(
        "--network", required=True, help=f"network mapping: {', '.join(available_networks())}"
    )
    parser.add_argument("--format", choices=FORMATS, help="default: from the file extension")
    parser.add_argument("--mapping", type=Path, help="mapping file (TOML or YAML)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=_publish)


def register(sub: argparse._SubParsersAction[Any], name: str, help_text: str) -> None:
    parser = sub.add_parser(
        name,
        help=help_text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="feed_command", required=True, metavar="SUBCOMMAND")
    _add_generate(commands)
    _add_publish(commands)


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    options = GenerateOptions(
        products=args.products,
        network=args.network,
        seed=args.seed,
        taxonomy_path=args.taxonomy or settings.taxonomy_path,
        fmt=args.format,
        corrupt_fraction=args.corrupt_fraction,
        duplicate_fraction=args.duplicate_fraction,
        update_fraction=args.update_fraction,
        image_base_url=args.image_base_url,
        mapping_file=args.mapping,
    )
    try:
        with ExitStack() as stack:
            out: BinaryIO = (
                stack.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
            )
            labels = (
                stack.enter_context(open(args.labels_out, "w", encoding="utf-8"))
                if args.labels_out
                else None
            )
            report = generate_feed(options, out, labels)
    except (MappingError, FeedFormatError, OSError) as exc:
        print(f"catstream feed generate: {exc}", file=sys.stderr)
        return 2
    corrupt = ", ".join(f"{k} {v}" for k, v in sorted(report.corrupt.items())) or "none"
    print(
        f"wrote {report.rows} {report.fmt} rows to {args.output or 'stdout'}: "
        f"{report.products} products, {report.duplicates} duplicates, "
        f"{report.price_updates} price updates, {report.title_updates} title updates, "
        f"corrupt: {corrupt} ({report.parse_failing} will be skipped as unparsable)",
        file=sys.stderr,
    )
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = publish_feed(
            args.path,
            args.network,
            settings,
            fmt=args.format,
            mapping=args.mapping,
            progress=False if args.no_progress else None,
        )
    except (MappingError, FeedFormatError, PublishError, OSError) as exc:
        print(f"catstream feed publish: {exc}", file=sys.stderr)
        return 2
    for error in report.skipped_rows[:_SHOWN_SKIPPED]:
        print(f"  skipped line {error.line}: {error.reason}", file=sys.stderr)
    if report.skipped > _SHOWN_SKIPPED:
        print(f"  … and {report.skipped - _SHOWN_SKIPPED} more skipped rows", file=sys.stderr)
    for failure in report.failures[:_SHOWN_SKIPPED]:
        print(f"  failed: {failure}", file=sys.stderr)
    print(report.summary())
    return 1 if report.failed else 0
