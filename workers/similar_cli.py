"""``catstream similar PRODUCT_ID``: the nearest products in the same category."""

from __future__ import annotations

import argparse
import json
import sys

from catstream.errors import CatstreamError
from catstream.settings import Settings
from workers.milvus_collection import MAX_LEVELS
from workers.similar import MAX_K, SIMILAR_BY, SimilarProduct, SimilarProducts


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("product_id", metavar="PRODUCT_ID")
    parser.add_argument("--k", type=int, default=100, help=f"how many (1 to {MAX_K}; default 100)")
    parser.add_argument(
        "--level",
        type=int,
        default=2,
        help=f"same category at this level, 0 = any category (0 to {MAX_LEVELS}; default 2)",
    )
    parser.add_argument("--by", choices=SIMILAR_BY, default="text", help="which embedding")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        results = SimilarProducts(settings).similar(
            args.product_id, k=args.k, level=args.level, by=args.by
        )
    except CatstreamError as exc:
        print(f"catstream similar: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for result in results:
            print(json.dumps(result.to_dict()))
    else:
        print(format_table(results))
    return 0


def format_table(results: list[SimilarProduct]) -> str:
    if not results:
        return "no similar products in that category (try a lower --level)"
    lines = [f"{'#':>4}  {'score':>6}  {'product_id':<32}  category"]
    for rank, result in enumerate(results, start=1):
        lines.append(
            f"{rank:>4}  {result.score:6.3f}  {result.product_id:<32}  {result.category_path}"
        )
    return "\n".join(lines)
