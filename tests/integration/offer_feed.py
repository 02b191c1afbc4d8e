"""Several merchants selling the same products under their own titles, prices and images.

``catalogue()`` gives products (family → one product) with capacity, size and
colour variants; ``offers()`` writes each product the way three merchants would
(different title templates, prices, currencies, image URLs, with or without the
model number and EAN). ``training_pairs()`` gives labelled pairs from *other*
families, so the matcher the tests train never saw the products it groups.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MERCHANTS = ("shopa", "bestbuyz", "megamart")


@dataclass(frozen=True)
class Product:
    family: str  # products with the same family and spec are the same product
    brand: str
    name: str
    spec: str
    model: str
    ean: str
    price: float
    cat_l1: int
    size: str | None = None
    colour: str | None = None

    @property
    def key(self) -> str:
        return f"{self.family}/{self.spec}"


def catalogue() -> list[Product]:
    return [
        Product(
            "xm5",
            "Sony",
            "WH-1000XM5 wireless noise cancelling headphones",
            "black",
            "WH1000XM5B",
            "4548736132610",
            329.0,
            222,
            colour="black",
        ),
        Product(
            "iphone15",
            "Apple",
            "iPhone 15 smartphone",
            "128GB blue",
            "MTP43",
            "0194253939030",
            799.0,
            222,
        ),
        Product(
            "iphone15",
            "Apple",
            "iPhone 15 smartphone",
            "256GB blue",
            "MTP93",
            "0194253940166",
            899.0,
            222,
        ),
        Product(
            "falcon",
            "LEGO",
            "Star Wars Millennium Falcon building set",
            "75257",
            "5702016370676",
            "5702016370676",
            149.0,
            1239,
        ),
        Product(
            "casserole",
            "Le Creuset",
            "cast iron round casserole",
            "24 cm",
            "21177240",
            "0024147269846",
            259.0,
            536,
        ),
        Product(
            "casserole",
            "Le Creuset",
            "cast iron round casserole",
            "20 cm",
            "21177200",
            "0024147269822",
            219.0,
            536,
        ),
    ]


def _title(product: Product, merchant: str) -> str:
    if merchant == "shopa":
        return f"{product.brand} {product.name} {product.spec}"
    if merchant == "bestbuyz":
        return f"{product.name.title()} by {product.brand} - {product.spec} ({product.model})"
    return f"{product.brand.upper()} {product.model} {product.name} {product.spec} | free delivery"


def offers(
    products: list[Product], seed: int = 1, updated_at: int = 1_700_000_000_000
) -> list[dict[str, Any]]:
    """One normalised-product dict per (product, merchant); ids ``<merchant>-<n>``."""
    rng = random.Random(seed)
    rows = []
    for index, product in enumerate(products):
        for merchant in MERCHANTS:
            currency = "GBP" if merchant == "megamart" else "EUR"
            factor = 0.86 if currency == "GBP" else 1.0
            price = round(product.price * factor * rng.uniform(0.9, 1.1), 2)
            extra: dict[str, Any] = {}
            if merchant != "shopa":
                extra["ean"] = product.ean
            if merchant == "megamart":
                extra["mpn"] = product.model
            rows.append(
                {
                    "product_id": f"{merchant}-{index}",
                    "family": product.key,
                    "cat_l1": product.cat_l1,
                    "fields": {
                        "merchant": merchant,
                        "title": _title(product, merchant),
                        "brand": product.brand,
                        "price": f"{price:.2f}",
                        "currency": currency,
                        "size": product.size,
                        "colour": product.colour,
                        "image_urls": [
                            f"https://img.{merchant}.example/{index}/{rng.randrange(9999)}.jpg"
                        ],
                        "url": f"https://{merchant}.example/p/{index}",
                        "extra": extra,
                        "updated_at": updated_at,
                    },
                }
            )
    return rows


def _training_catalogue() -> list[Product]:
    families = [
        ("Bose", "QuietComfort 45 headphones", "QC45", 222),
        ("Samsung", "980 PRO NVMe SSD", "MZV8P1T0", 222),
        ("Canon", "EOS R50 mirrorless camera", "5811C002", 222),
        ("Dyson", "V15 Detect cordless vacuum", "V15DET", 536),
        ("Philips", "Hue White starter kit", "929002468", 536),
        ("Tefal", "non-stick frying pan", "G2690", 536),
        ("Hasbro", "Monopoly classic board game", "C1009", 1239),
        ("Mattel", "UNO card game", "W2087", 1239),
        ("Garmin", "Forerunner 255 GPS watch", "010-02641", 222),
        ("Logitech", "MX Master 3S wireless mouse", "910-006559", 222),
        ("KitchenAid", "Artisan stand mixer", "5KSM175", 536),
        ("Ravensburger", "1000 piece jigsaw puzzle", "RB17080", 1239),
    ]
    specs = {222: ["1TB", "2TB"], 536: ["28 cm", "24 cm"], 1239: ["classic", "deluxe"]}
    products = []
    for n, (brand, name, model, cat) in enumerate(families):
        for s, spec in enumerate(specs[cat]):
            products.append(
                Product(
                    f"train{n}",
                    brand,
                    name,
                    spec,
                    f"{model}{s}",
                    f"40000000{n:03d}{s}",
                    50.0 + 40 * n + 10 * s,
                    cat,
                )
            )
    return products


def _record(row: dict[str, Any]) -> dict[str, Any]:
    fields = row["fields"]
    return {
        "id": row["product_id"],
        "title": fields["title"],
        "brand": fields["brand"],
        "price": float(fields["price"]),
        "currency": fields["currency"],
        "merchant": fields["merchant"],
        **({"ean": fields["extra"]["ean"]} if "ean" in fields["extra"] else {}),
    }


def training_pairs(directory: Path, seed: int = 7) -> tuple[Path, Path]:
    """``train.jsonl`` and ``valid.jsonl`` of labelled pairs from the training catalogue."""
    rng = random.Random(seed)
    rows = offers(_training_catalogue(), seed=seed)
    pairs = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            same = a["family"] == b["family"]
            # Variants: one product line, another spec (the hard negatives).
            variant = not same and a["family"].split("/")[0] == b["family"].split("/")[0]
            nearby = a["cat_l1"] == b["cat_l1"] and rng.random() < 0.25
            if same or variant or nearby:
                pairs.append({"left": _record(a), "right": _record(b), "label": int(same)})
    rng.shuffle(pairs)
    cut = int(len(pairs) * 0.75)
    directory.mkdir(parents=True, exist_ok=True)
    train, valid = directory / "train.jsonl", directory / "valid.jsonl"
    for path, part in ((train, pairs[:cut]), (valid, pairs[cut:])):
        path.write_text("".join(json.dumps(p) + "\n" for p in part), encoding="utf-8")
    return train, valid


def large_catalogue(families: int, seed: int = 3) -> list[Product]:
    """``families`` distinct products (two capacity variants each) for the benchmark."""
    rng = random.Random(seed)
    brands = ["Acme", "Zento", "Norvik", "Plexa", "Quarto", "Helix", "Mirra", "Tavon"]
    kinds = [
        ("wireless earbuds", 222, "GB"),
        ("portable SSD", 222, "TB"),
        ("smart watch", 222, "mm"),
        ("stainless steel saucepan", 536, "cm"),
        ("electric kettle", 536, "l"),
        ("building bricks set", 1239, "pcs"),
    ]
    products = []
    for n in range(families):
        brand = rng.choice(brands)
        kind, cat, unit = kinds[n % len(kinds)]
        line = f"{rng.choice(['Pro', 'Max', 'Lite', 'Go', 'Air', 'One'])} {100 + n}"
        for size in (rng.choice([16, 20, 32]), rng.choice([40, 64, 128])):
            products.append(
                Product(
                    f"bench{n}",
                    brand,
                    f"{line} {kind}",
                    f"{size} {unit}",
                    f"{brand[:2].upper()}{100 + n}{size}",
                    f"59{n:06d}{size:04d}",
                    round(rng.uniform(20, 400), 2),
                    cat,
                )
            )
    return products
