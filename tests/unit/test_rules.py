"""The rule labeller on a table of cases, its errors, and the starter rules file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from catstream.taxonomy import Taxonomy
from schemas.events import NormalisedProduct
from training.rules import RuleLabeller, RulesError, phrase_pattern, word_forms

ROOT = Path(__file__).resolve().parents[2]
GOOGLE = ROOT / "catstream" / "data" / "google_product_taxonomy.en-US.txt"
STARTER = ROOT / "training" / "rules" / "google_starter.yaml"

TAXONOMY_LINES = [
    "1 - Apparel",
    "2 - Apparel > Clothing",
    "3 - Apparel > Clothing > Dresses",
    "4 - Apparel > Clothing > Dresses > Wedding Dresses",
    "5 - Apparel > Clothing > Shirts",
    "6 - Apparel > Shoes",
    "7 - Home",
    "8 - Home > Shoe Racks",
    "9 - Home > Kitchen > Knives",
    "10 - Home > Kitchen",
]

RULES: dict[str, Any] = {
    "version": 1,
    "rules": [
        {
            "category": "Apparel > Clothing > Dresses",
            "title": ["dress"],
            "not_title": ["dress shirt"],
        },
        {"category": 4, "name": "wedding", "title": ["wedding dress", "bridal gown"]},
        {"category": "apparel>clothing>shirts", "title": ["shirt", "t-shirt"], "plurals": True},
        {"category": "Apparel > Shoes", "title": ["shoe", "sneaker"], "not_title": ["shoe rack"]},
        {"category": "Apparel > Shoes", "name": "shoe brands", "brand": ["Nike", "Adidas"]},
        {"category": "Home > Shoe Racks", "title": ["shoe rack"]},
        {
            "category": "Home > Kitchen > Knives",
            "raw_category": ["kitchen knives", "cutlery > knives"],
        },
        {
            "category": "Home > Kitchen > Knives",
            "name": "knife regex",
            "regex": [r"\bchef'?s? knife\b", r"\b\d+\s?(?:cm|inch) blade\b"],
            "not_regex": [r"pocket"],
        },
        {
            "category": "Home > Kitchen",
            "name": "kitchen brand and word",
            "brand": ["WMF"],
            "title": ["pan"],
            "match": "all",
        },
    ],
}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.from_lines(TAXONOMY_LINES, source="rules-taxonomy.txt")


@pytest.fixture(scope="module")
def labeller(taxonomy: Taxonomy) -> RuleLabeller:
    return RuleLabeller.from_mapping(RULES, taxonomy, source="rules.yaml")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"title": "Floral Summer Dress"}, {1, 2, 3}),
        ({"title": "floral summer DRESSES"}, {1, 2, 3}),
        ({"title": "Lace Wedding Dress, ivory"}, {1, 2, 3, 4}),
        ({"title": "Bridal gowns sale"}, {1, 2, 3, 4}),
        ({"title": "Slim fit dress shirt"}, {1, 2, 5}),  # negation vetoes Dresses
        ({"title": "Cotton T-Shirts 3-pack"}, {1, 2, 5}),
        ({"title": "Cotton t shirt"}, {1, 2, 5}),
        ({"title": "Address book"}, set()),  # word boundaries: 'dress' inside 'address'
        ({"title": "Dressing gown"}, set()),
        ({"title": "Running sneakers"}, {1, 6}),
        ({"title": "3-tier shoe rack"}, {7, 8}),  # Shoes vetoed, Shoe Racks fires
        ({"title": "Air Max 90", "brand": "NIKE"}, {1, 6}),
        ({"title": "Some product", "category_path": ["Home", "Cutlery", "Knives"]}, {7, 9, 10}),
        ({"title": "Some product", "raw_category": "Home/Cutlery/Knives"}, {7, 9, 10}),
        ({"title": "x", "category_path": ["Fine Cutlery", "Steak Knives"]}, {7, 9, 10}),
        ({"title": "x", "category_path": ["Cutlery", "Forks", "Knives"]}, set()),  # not adjacent
        ({"title": "x", "category_path": ["Home", "Cutlery Knives"]}, set()),  # one segment
        ({"title": "Chef's knife"}, {7, 9, 10}),
        ({"title": "Utility", "description": "A 20 cm blade of steel"}, {7, 9, 10}),
        ({"title": "Pocket chef knife"}, set()),  # not_regex
        ({"title": "Frying pan 28cm", "brand": "WMF"}, {7, 10}),  # match: all
        ({"title": "Frying pan 28cm"}, set()),
        ({"title": "Cutlery set", "brand": "WMF"}, set()),
        ({"title": ""}, set()),
        ({}, set()),
    ],
)
def test_label_table(labeller: RuleLabeller, fields: dict[str, Any], expected: set[int]) -> None:
    assert expected == labeller.label(fields)


def test_normalised_product_is_accepted(labeller: RuleLabeller) -> None:
    product = NormalisedProduct(
        product_id="p1", title="Wedding Dress", category_path=["Women", "Dresses"]
    )
    assert labeller.label(product) == {1, 2, 3, 4}
    assert labeller.fired(product) == {3, 4}


def test_explain_says_which_rule_fired(labeller: RuleLabeller) -> None:
    matches = labeller.explain({"title": "Lace wedding dress", "brand": "Nike"})
    assert [(m.rule, m.condition, m.matched) for m in matches] == [
        ("Apparel > Clothing > Dresses", "title", "dress"),
        ("wedding", "title", "wedding dress"),
        ("shoe brands", "brand", "nike"),
    ]
    best = labeller.best({"title": "Lace wedding dress"})
    assert best is not None
    assert best.category_id == 4
    assert labeller.best({"title": "nothing here"}) is None


@pytest.mark.parametrize(
    ("word", "forms"),
    [
        ("dress", {"dress", "dresses"}),
        ("dresses", {"dresses", "dress"}),
        ("battery", {"battery", "batteries"}),
        ("batteries", {"batteries", "battery"}),
        ("shoe", {"shoe", "shoes"}),
        ("box", {"box", "boxes"}),
        ("tv", {"tv"}),
        ("bus", {"bus"}),
    ],
)
def test_word_forms(word: str, forms: set[str]) -> None:
    assert forms == word_forms(word)


def test_phrase_pattern_without_plurals() -> None:
    import re

    pattern = re.compile(phrase_pattern("Wine Glass", plurals=False))
    assert pattern.search("crystal wine glass")
    assert not pattern.search("crystal wine glasses")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"rules": []}, r"r.yaml: 'rules' is empty"),
        ([], r"r.yaml: expected a mapping with a 'rules:' list"),
        ({"rules": [{"title": ["x"]}]}, r"r.yaml: rule 1: missing 'category'"),
        (
            {"rules": [{"category": "Apparel", "title": "x"}, {"category": "Apparel > Hats"}]},
            r"r.yaml: rule 2 \(Apparel > Hats\): unknown category path 'Apparel > Hats'",
        ),
        (
            {"rules": [{"category": "Home", "name": "r1", "regex": ["(unclosed"]}]},
            r"r.yaml: rule 1 \(r1\): invalid regex in 'regex'",
        ),
        (
            {"rules": [{"category": "Home", "not_title": ["x"]}]},
            r"r.yaml: rule 1 \(Home\): no positive condition",
        ),
        (
            {"rules": [{"category": "Home", "titel": ["x"]}]},
            r"r.yaml: rule 1 \(Home\): unknown keys \['titel'\]",
        ),
        (
            {"rules": [{"category": "Home", "title": {"a": 1}}]},
            r"rule 1 \(Home\): 'title' must be a string or a list",
        ),
        (
            {"rules": [{"category": "Home", "title": "x", "match": "some"}]},
            r"rule 1 \(Home\): 'match' must be 'any' or 'all'",
        ),
    ],
)
def test_rules_errors_name_file_and_rule(taxonomy: Taxonomy, rules: Any, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        RuleLabeller.from_mapping(rules, taxonomy, source="r.yaml")


def test_load_reports_yaml_syntax_errors(tmp_path: Path, taxonomy: Taxonomy) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules: [\n  - category: Home\n", encoding="utf-8")
    with pytest.raises(RulesError, match=r"bad\.yaml: not valid YAML"):
        RuleLabeller.load(path, taxonomy)
    with pytest.raises(RulesError, match="rules file not found"):
        RuleLabeller.load(tmp_path / "missing.yaml", taxonomy)


def test_load_from_file(tmp_path: Path, taxonomy: Taxonomy) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(RULES), encoding="utf-8")
    labeller = RuleLabeller.load(path, taxonomy)
    assert labeller.label({"title": "summer dress"}) == {1, 2, 3}
    assert labeller.categories == {3, 4, 5, 6, 8, 9, 10}


@pytest.fixture(scope="module")
def starter() -> RuleLabeller:
    return RuleLabeller.load(STARTER, Taxonomy.load(GOOGLE))


@pytest.mark.parametrize(
    ("title", "leaf"),
    [
        ("Women's Floral Summer Maxi Dress", "Dresses"),
        ("Lace wedding dress ivory", "Wedding Dresses"),
        ("Stainless steel chef knife 8 inch", "Kitchen Knives"),
        ("Dry cat food salmon 2kg", "Cat Food"),
        ("Logitech wireless mouse M185", "Mice & Trackballs"),
        ('Samsung 55" 4K Smart TV', "Televisions"),
        ("TV stand oak", "Entertainment Centers & TV Stands"),
        ("Queen size duvet cover cotton", "Duvet Covers"),
        ("Yoga mat non slip 6mm", "Yoga & Pilates Mats"),
        ("Gold hoop earrings", "Earrings"),
        ("Hiking backpack 40L", "Backpacks"),
    ],
)
def test_starter_rules_on_typical_titles(starter: RuleLabeller, title: str, leaf: str) -> None:
    best = starter.best({"title": title})
    assert best is not None
    assert leaf == starter.taxonomy.name(best.category_id)


def test_starter_rules_cover_a_few_hundred_categories(starter: RuleLabeller) -> None:
    assert len(starter.categories) >= 300
    assert starter.label({"title": "3 tier shoe rack"}).isdisjoint(
        {starter.taxonomy.by_path("Apparel & Accessories > Shoes")}
    )
