"""Generate ``google_starter.yaml``: starter rules for consumer leaves of the Google taxonomy.

Run ``python -m training.starter_rules`` after changing it, then
review the diff and commit the YAML. For every chosen leaf the leaf's name gives the
title phrases ("Bird Cages & Stands" → "bird cages", "bird stands"; plurals are
matched by the labeller). A phrase of one rule that contains another rule's phrase
("wedding dresses" ⊃ "dresses") becomes a negation of the shorter rule, so the more
specific rule wins instead of both firing. ``OVERRIDES`` holds the hand fixes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from catstream.taxonomy import Taxonomy
from training.rules import phrase_pattern

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TAXONOMY = PROJECT_ROOT / "catstream" / "data" / "google_product_taxonomy.en-US.txt"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "rules" / "google_starter.yaml"

# Branches shoppers of an affiliate catalogue meet most; others are left to the model.
BRANCHES = (
    "Apparel & Accessories",
    "Animals & Pet Supplies > Pet Supplies",
    "Baby & Toddler",
    "Electronics > Audio",
    "Electronics > Communications > Telephony",
    "Electronics > Computers",
    "Electronics > Electronics Accessories > Computer Accessories",
    "Electronics > Electronics Accessories > Computer Components > Input Devices",
    "Electronics > Electronics Accessories > Power",
    "Electronics > Print, Copy, Scan & Fax",
    "Electronics > Video",
    "Electronics > Video Game Consoles",
    "Furniture",
    "Health & Beauty > Personal Care",
    "Home & Garden > Bathroom Accessories",
    "Home & Garden > Decor",
    "Home & Garden > Household Appliances",
    "Home & Garden > Kitchen & Dining",
    "Home & Garden > Lighting",
    "Home & Garden > Linens & Bedding",
    "Luggage & Bags",
    "Cameras & Optics > Cameras",
    "Sporting Goods > Exercise & Fitness",
    "Sporting Goods > Outdoor Recreation > Camping & Hiking",
    "Toys & Games",
    "Office Supplies > Office Instruments > Writing & Drawing Instruments",
)
# Leaves whose names describe add-ons of something else: a title naming the main
# thing would fire them wrongly.
SKIPPED_NAME = re.compile(r"\b(accessories|accessory|parts|replacement|other|kits?)\b", re.I)
# Words too generic to label a product on their own.
GENERIC_WORDS = frozenset(
    """
    accessories bags bases boards boxes cards care cases chips covers equipment food gear
    holders kits machines materials mounts pads products sets stands storage supplies systems
    tools units water liners inserts clips hooks protectors organizers bottoms tops wraps
    caps ties toys games balls chairs tables frames lights baby toddler kitchen dining
    """.split()
)
MIN_WORD_LENGTH = 4
# Deeper leaves are mostly parts and variants that titles rarely name.
MAX_LEVEL = 5
MAX_NEGATIONS = 25
# Generated phrases that name something else as often as the category (hand-checked).
DROPPED_PHRASES = frozenset(
    {"reptile", "lighting", "crossovers", "equalizers", "forks", "ponds", "tee", "heels"}
)

# Hand fixes: path → extra title phrases, extra negations, or a full replacement.
OVERRIDES: dict[str, dict[str, list[str]]] = {
    "Apparel & Accessories > Clothing > Shirts & Tops": {
        "title": [
            "shirts",
            "t-shirt",
            "tee shirt",
            "blouse",
            "tank top",
            "polo shirt",
            "sweatshirt",
        ],
        "not_title": ["dress shirt", "shirt dress", "nightshirt"],
    },
    "Apparel & Accessories > Clothing > Pants": {
        "title": ["pants", "trousers", "jeans", "leggings", "chinos", "joggers"],
    },
    "Apparel & Accessories > Shoes": {
        "title": ["shoes", "sneakers", "trainers", "boots", "sandals", "loafers", "high heels"],
        "not_title": ["shoe rack", "shoe polish", "shoe horn", "boot tray", "car boot"],
    },
    "Apparel & Accessories > Jewelry > Watches": {
        "title": ["watch", "wristwatch", "smartwatch"],
        "not_title": ["watch band", "watch strap", "watch winder", "watch box"],
    },
    (
        "Electronics > Electronics Accessories > Computer Components > Input Devices"
        " > Mice & Trackballs"
    ): {
        "replace": [
            "computer mouse",
            "wireless mouse",
            "gaming mouse",
            "optical mouse",
            "trackball",
        ],
    },
    "Furniture > Chairs > Arm Chairs, Recliners & Sleeper Chairs": {
        "replace": ["armchair", "arm chair", "recliner", "sleeper chair"],
    },
    "Electronics > Communications > Telephony > Mobile Phones > Unlocked Mobile Phones": {
        "title": ["smartphone", "unlocked phone"],
        "not_title": ["smartphone case", "smartphone holder", "smartphone mount"],
    },
    "Electronics > Communications > Telephony > Mobile Phone Accessories > Mobile Phone Cases": {
        "title": ["phone case", "iphone case", "galaxy case", "phone cover"],
    },
    "Electronics > Computers > Laptops": {"title": ["laptop", "notebook computer", "chromebook"]},
    "Electronics > Computers > Tablet Computers": {
        "replace": ["tablet computer", "android tablet", "ipad", "galaxy tab"],
    },
    "Health & Beauty > Personal Care > Hair Care > Hair Styling Tools > Combs & Brushes": {
        "replace": ["comb", "hairbrush", "hair brush", "detangling brush"],
    },
    "Home & Garden > Household Appliances > Laundry Appliances > Dryers": {
        "replace": ["tumble dryer", "clothes dryer"],
    },
    "Home & Garden > Kitchen & Dining > Kitchen Appliances > Ranges": {
        "replace": ["kitchen range", "gas range", "electric range", "range cooker"],
    },
    "Toys & Games > Outdoor Play Equipment > Slides": {
        "replace": ["playground slide", "garden slide", "kids slide"],
    },
    "Home & Garden > Decor > Trunks": {"replace": ["storage trunk", "decorative trunk"]},
    "Electronics > Video > Televisions": {
        "title": ["tv", "smart tv", "television", "oled tv", "qled tv"],
        "not_title": ["tv stand", "tv mount", "tv remote", "tv box", "tv antenna"],
    },
    "Animals & Pet Supplies > Pet Supplies > Cat Supplies > Cat Food": {
        "replace": ["cat food", "kitten food", "cat treats"],
    },
    "Animals & Pet Supplies > Pet Supplies > Dog Supplies > Dog Food": {
        "replace": ["dog food", "puppy food"],
    },
    "Animals & Pet Supplies > Pet Supplies > Pet Collars & Harnesses": {
        "title": ["dog collar", "cat collar", "dog harness", "cat harness"],
    },
    "Home & Garden > Kitchen & Dining > Kitchen Tools & Utensils > Kitchen Knives": {
        "title": ["chef knife", "chef's knife", "paring knife", "bread knife", "santoku knife"],
    },
    "Home & Garden > Kitchen & Dining > Kitchen Appliances > Coffee Makers & Espresso Machines": {
        "replace": ["coffee maker", "coffee machine"],
    },
    "Electronics > Communications > Telephony > Mobile Phones": {
        "replace": ["mobile phone", "cell phone"],
    },
    "Electronics > Audio > Audio Components > Headphones & Headsets > Headphones": {
        "title": ["earphones", "earbuds", "headphone"],
        "not_title": ["headphone amplifier", "headphone stand", "headphone cushion"],
    },
}


def _split_name(name: str) -> list[str]:
    """A Google leaf name → the phrases it stands for (lower case)."""
    parts = [p.strip().lower() for p in re.split(r",\s*&\s*|\s*,\s*|\s+&\s+", name) if p.strip()]
    words = [p.split() for p in parts]
    if len(parts) > 1 and all(len(w) == 1 for w in words[:-1]) and len(words[-1]) > 1:
        # "Baby & Toddler Dresses": leading parts are modifiers of the last part's noun.
        tail = " ".join(words[-1][1:])
        return [f"{p} {tail}" for p in parts[:-1]] + [parts[-1]]
    if len(parts) > 1 and len(words[0]) > 1 and all(len(w) == 1 for w in words[1:]):
        # "Bird Cages & Stands": later nouns share the first part's modifiers.
        head = " ".join(words[0][:-1])
        return [parts[0]] + [f"{head} {p}" for p in parts[1:]]
    return parts


def _specific(phrase: str) -> bool:
    words = phrase.split()
    if len(words) > 1:
        return True
    word = words[0]
    return len(word) >= MIN_WORD_LENGTH and word not in GENERIC_WORDS and word.isalpha()


def _leaves(taxonomy: Taxonomy) -> list[int]:
    chosen: list[int] = []
    for branch in BRANCHES:
        root = taxonomy.by_path(branch)
        for category_id in (root, *taxonomy.descendants(root)):
            if (
                taxonomy.is_leaf(category_id)
                and taxonomy.level(category_id) <= MAX_LEVEL
                and not SKIPPED_NAME.search(taxonomy.name(category_id))
            ):
                chosen.append(category_id)
    # Hand-picked categories join even when they are not leaves or lie outside BRANCHES.
    chosen.extend(taxonomy.by_path(path) for path in OVERRIDES)
    return list(dict.fromkeys(chosen))


def _phrases(taxonomy: Taxonomy, category_id: int) -> list[str]:
    override = OVERRIDES.get(taxonomy.path_str(category_id), {})
    if "replace" in override:
        return list(override["replace"])
    phrases = [
        p
        for p in _split_name(taxonomy.name(category_id))
        if _specific(p) and p not in DROPPED_PHRASES
    ]
    return list(dict.fromkeys(phrases + override.get("title", [])))


def build_rules(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    phrases = {c: _phrases(taxonomy, c) for c in _leaves(taxonomy)}
    phrases = {c: p for c, p in phrases.items() if p}
    patterns = {c: re.compile(phrase_pattern_any(p)) for c, p in phrases.items()}
    rules: list[dict[str, Any]] = []
    for category_id, own in phrases.items():
        related = set(taxonomy.ancestors_and_self(category_id))
        longer = sorted(
            {
                other_phrase
                for other, other_phrases in phrases.items()
                if other not in related
                for other_phrase in other_phrases
                if other_phrase not in own and patterns[category_id].search(other_phrase)
            },
            key=lambda p: (len(p), p),
        )
        path = taxonomy.path_str(category_id)
        negations = list(
            dict.fromkeys(longer[:MAX_NEGATIONS] + OVERRIDES.get(path, {}).get("not_title", []))
        )
        rule: dict[str, Any] = {"category": path, "title": own, "raw_category": list(own)}
        if negations:
            rule["not_title"] = negations
            rule["not_raw_category"] = list(negations)
        rules.append(rule)
    return rules


def phrase_pattern_any(phrases: list[str]) -> str:
    return "|".join(f"(?:{phrase_pattern(p, plurals=True)})" for p in phrases)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    taxonomy = Taxonomy.load(args.taxonomy)
    rules = build_rules(taxonomy)
    header = (
        "# Starter rules for the Google product taxonomy, generated by\n"
        "# training/starter_rules.py (edit OVERRIDES there, regenerate).\n"
        f"# taxonomy hash: {taxonomy.hash}\n"
    )
    body = yaml.safe_dump(
        {"version": 1, "defaults": {"plurals": True}, "rules": rules},
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    args.output.write_text(header + body, encoding="utf-8")
    print(f"wrote {len(rules)} rules to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
