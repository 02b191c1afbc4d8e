"""Taxonomy parsing, lookups, hierarchy walks and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from catstream.taxonomy import (
    PATH_ID_OFFSET,
    Taxonomy,
    TaxonomyError,
    UnknownCategoryError,
    load_taxonomy,
    path_id,
)

ROOT = Path(__file__).resolve().parents[2]
GOOGLE = ROOT / "catstream" / "data" / "google_product_taxonomy.en-US.txt"
CUSTOM = ROOT / "tests" / "data" / "custom_taxonomy.txt"

GOOGLE_LINES = [
    "# Google_Product_Taxonomy_Version: test",
    "1 - Animals & Pet Supplies",
    "2 - Animals & Pet Supplies > Pet Supplies",
    "4 - Animals & Pet Supplies > Pet Supplies > Cat Supplies",
    "3367 - Animals & Pet Supplies > Pet Supplies > Cat Supplies > Cat Food",
    "5 - Animals & Pet Supplies > Pet Supplies > Dog Supplies",
    "166 - Apparel & Accessories",
]


@pytest.fixture(scope="module")
def google() -> Taxonomy:
    return Taxonomy.load(GOOGLE)


@pytest.fixture(scope="module")
def small() -> Taxonomy:
    return Taxonomy.from_lines(GOOGLE_LINES, source="small.txt")


def test_google_format_fields(small: Taxonomy) -> None:
    food = small.get(3367)
    assert food.name == "Cat Food"
    assert food.path == ("Animals & Pet Supplies", "Pet Supplies", "Cat Supplies", "Cat Food")
    assert food.parent_id == 4
    assert food.level == 4
    assert small.path_str(3367) == "Animals & Pet Supplies > Pet Supplies > Cat Supplies > Cat Food"
    assert small.ids == (1, 2, 4, 3367, 5, 166)
    assert len(small) == 6
    assert small.depth == 4


def test_hierarchy_walks(small: Taxonomy) -> None:
    assert small.ancestors(3367) == (1, 2, 4)
    assert small.ancestors_and_self(3367) == (1, 2, 4, 3367)
    assert small.ancestors(1) == ()
    assert small.parent(1) is None
    assert small.children(2) == (4, 5)
    assert small.descendants(1) == (2, 4, 3367, 5)
    assert small.descendants(3367) == ()
    assert small.leaves() == [3367, 5, 166]
    assert small.roots() == [1, 166]
    assert small.is_leaf(5)
    assert not small.is_leaf(4)
    assert small.ancestor_at_level(3367, 2) == 2
    assert small.ancestor_at_level(3367, 4) == 3367
    assert small.ancestor_at_level(2, 3) is None
    assert small.closure([3367, 166]) == {1, 2, 4, 3367, 166}


def test_lookup_is_case_and_whitespace_insensitive(small: Taxonomy) -> None:
    assert small.by_path("animals & pet supplies>pet supplies >  CAT supplies") == 4
    assert small.by_path("Animals & Pet Supplies › Pet Supplies") == 2
    assert small.by_path(("Animals & Pet Supplies",)) == 1
    assert small.find_path("Animals > Nope") is None
    assert small.resolve(3367) == 3367
    assert small.resolve("3367") == 3367
    assert small.resolve(" animals & pet supplies ") == 1


def test_unknown_path_suggests_close_paths(small: Taxonomy) -> None:
    with pytest.raises(UnknownCategoryError) as info:
        small.resolve("Cat Food")
    message = str(info.value)
    assert "unknown category path 'Cat Food'" in message
    assert "Animals & Pet Supplies > Pet Supplies > Cat Supplies > Cat Food" in message
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownCategoryError, match="category id 99"):
        small.resolve(99)


def test_plain_format_creates_missing_ancestors_with_stable_ids() -> None:
    lines = ["Home > Kitchen > Knives", "Home > Garden"]
    taxonomy = Taxonomy.from_lines(lines)
    knives = taxonomy.by_path("home > kitchen > knives")
    assert taxonomy.path(knives) == ("Home", "Kitchen", "Knives")
    assert [taxonomy.name(i) for i in taxonomy.ancestors(knives)] == ["Home", "Kitchen"]
    assert knives == path_id(("home", "KITCHEN", "Knives")) > PATH_ID_OFFSET
    # Adding and reordering lines keeps every id.
    grown = Taxonomy.from_lines(["Toys", *reversed(lines)])
    assert grown.by_path("Home > Kitchen > Knives") == knives
    assert grown.by_path("Home") == taxonomy.by_path("Home")
    assert len(grown) == len(taxonomy) + 1


def test_hash_depends_on_content_not_order(small: Taxonomy) -> None:
    shuffled = Taxonomy.from_lines(list(reversed(GOOGLE_LINES)))
    assert shuffled.hash == small.hash
    changed = Taxonomy.from_lines([*GOOGLE_LINES, "7 - Animals & Pet Supplies > Live Animals"])
    assert changed.hash != small.hash
    assert len(small.hash) == 64


def test_google_taxonomy(google: Taxonomy) -> None:
    assert len(google) == 5582
    assert google.depth == 7
    assert len(google.roots()) == 21
    assert google.by_path("Animals & Pet Supplies > Pet Supplies > Cat Supplies") == 4
    piñatas = google.by_path(
        "arts & entertainment > party & celebration > party supplies > PIÑATAS"
    )
    assert google.name(piñatas) == "Piñatas"
    # Every category's ancestors are real and one level apart.
    for category in google:
        chain = google.ancestors_and_self(category.id)
        assert [google.level(i) for i in chain] == list(range(1, category.level + 1))
        assert google.path(category.id)[:-1] == (
            google.path(category.parent_id) if category.parent_id is not None else ()
        )


def test_custom_unicode_taxonomy() -> None:
    taxonomy = Taxonomy.load(CUSTOM)
    assert taxonomy.depth == 4
    tea = taxonomy.by_path("食品 > 茶 > 緑茶")
    assert taxonomy.path(tea) == ("食品", "茶", "緑茶")
    assert taxonomy.level(tea) == 3
    hydrating = taxonomy.by_path("beauté>soins du visage>crèmes hydratantes")
    assert [taxonomy.name(i) for i in taxonomy.ancestors(hydrating)] == [
        "Beauté",
        "Soins du Visage",
    ]
    électronique = taxonomy.by_path("ÉLECTRONIQUE")
    assert taxonomy.level(électronique) == 1
    assert len(taxonomy.descendants(électronique)) == 10  # 3 groups, 7 leaves
    assert all(taxonomy.is_leaf(i) for i in taxonomy.leaves())
    assert 30 <= len(taxonomy.leaves()) <= 60


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], r"empty.txt: the taxonomy is empty"),
        (["# only a comment", "   "], r"empty.txt: the taxonomy is empty"),
        (["1 - A", "2 - A > B", "2 - A > C"], r"empty.txt:3: duplicate id 2 \(first on line 2"),
        (["1 - A", "2 - A > B", "1 - A > B > C"], r"empty.txt:3: cycle: id 1"),
        (["A > B", "C", "a  >  b"], r"empty.txt:3: duplicate path 'a > b' \(first on line 1\)"),
        (["1 - A", "2 - A >  > B"], r"empty.txt:2: empty path segment"),
    ],
)
def test_errors_name_file_and_line(lines: list[str], message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        Taxonomy.from_lines(lines, source="empty.txt")


def test_explicit_id_colliding_with_derived_id_is_reported() -> None:
    derived = path_id(("Home",))
    with pytest.raises(TaxonomyError, match=r"t.txt:2: id \d+ of 'Garden' collides with 'Home'"):
        Taxonomy.from_lines(["Home > Kitchen", f"{derived} - Garden"], source="t.txt")


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="CATSTREAM_TAXONOMY_PATH"):
        Taxonomy.load(tmp_path / "nope.txt")


def test_load_taxonomy_caches_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("A > B\n", encoding="utf-8")
    first = load_taxonomy(path)
    assert load_taxonomy(path) is first
    path.write_text("A > B\nA > C\n", encoding="utf-8")
    import os

    os.utime(path, ns=(1, 1))
    assert len(load_taxonomy(path)) == 3
