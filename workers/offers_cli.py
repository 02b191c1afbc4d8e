"""``catstream offers PRODUCT_ID``: other merchants' offers of the same product, cheapest first."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from catstream.errors import CatstreamError
from catstream.settings import Settings
from workers.offers import ProductOffers


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("product_id", metavar="PRODUCT_ID")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    offers = ProductOffers(settings)
    try:
        result = offers.offers(args.product_id)
    except (CatstreamError, LookupError) as exc:
        print(f"catstream offers: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    finally:
        offers.close()
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _price(offer: dict[str, Any]) -> str:
    if offer["price_normalised"] is not None:
        return f"{offer['price_normalised']:.2f} {offer['normalised_currency']}"
    if offer["price"] is not None:
        return f"{offer['price']:.2f} {offer['currency'] or ''}".strip()
    return "-"


def format_table(result: dict[str, Any]) -> str:
    lines = [f"offer group {result['offer_group']} of {result['product_id']}"]
    rates = result.get("exchange_rates") or {}
    if rates:
        lines.append(f"prices in {result['currency']}: {rates['source']} ({rates['file']})")
    if rates.get("warning"):
        lines.append(f"warning: {rates['warning']}")
    if not result["offers"]:
        lines.append("no other merchant offers this product (yet)")
        return "\n".join(lines)
    lines.append(f"{'#':>3}  {'price':>14}  {'merchant':<20}  {'product_id':<24}  title")
    for rank, offer in enumerate(result["offers"], start=1):
        lines.append(
            f"{rank:>3}  {_price(offer):>14}  {offer['merchant'] or '-'!s:<20}  "
            f"{offer['product_id']!s:<24}  {offer['title'] or ''}"
        )
        if offer.get("unconverted"):
            lines.append(f"{'':>3}  not converted: {offer['unconverted']}")
    if result.get("configure"):
        lines.append(f"to convert every price: {result['configure']}")
    return "\n".join(lines)
