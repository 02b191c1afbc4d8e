"""Similar-products request checks, category filters and score combination."""

from __future__ import annotations

import pytest

from workers.milvus_filters import Filter
from workers.similar import (
    Query,
    SimilarError,
    category_filter,
    category_ids_of,
    check_request,
    combined_score,
    cosine,
)

QUERY = Query(product_id="p1", text_vector=[1.0], image_vector=None, category_ids=[5, 50, 500])


@pytest.mark.parametrize(
    ("k", "level", "by", "message"),
    [
        (0, 1, "text", "1 to 16384"),
        (20000, 1, "text", "1 to 16384"),
        (10, -1, "text", "0 \\(all categories\\) to 7"),
        (10, 8, "text", "0 \\(all categories\\) to 7"),
        (10, 1, "colour", "text, image, both"),
    ],
)
def test_bad_requests_name_the_valid_range(k: int, level: int, by: str, message: str) -> None:
    with pytest.raises(SimilarError, match=message):
        check_request(k, level, by)


def test_level_zero_only_excludes_the_product() -> None:
    assert category_filter(QUERY, 0) == Filter("product_id != {product_id}", {"product_id": "p1"})


def test_level_one_filters_on_the_partition_key() -> None:
    assert category_filter(QUERY, 1) == Filter(
        "product_id != {product_id} and cat_l1 == {cat_l1}", {"product_id": "p1", "cat_l1": 5}
    )


def test_deeper_levels_also_filter_on_level_one_for_partition_pruning() -> None:
    assert category_filter(QUERY, 3) == Filter(
        "product_id != {product_id} and cat_l1 == {cat_l1} and cat_l3 == {cat_level}",
        {"product_id": "p1", "cat_l1": 5, "cat_level": 500},
    )


def test_a_hostile_id_is_a_bound_value_never_part_of_the_expression() -> None:
    hostile = Query(product_id='x" or product_id != "', text_vector=[1.0], image_vector=None)
    assert category_filter(hostile, 0) == Filter(
        "product_id != {product_id}", {"product_id": hostile.product_id}
    )


def test_level_deeper_than_the_product_path_says_which_level_works() -> None:
    with pytest.raises(SimilarError, match="only to level 3: use --level 3"):
        category_filter(QUERY, 4)


def test_combined_score_averages_only_when_an_image_score_exists() -> None:
    assert combined_score(0.8, 0.4) == pytest.approx(0.6)
    assert combined_score(0.8, None) == 0.8


def test_cosine_of_parallel_orthogonal_and_zero_vectors() -> None:
    assert cosine([1.0, 1.0], [2.0, 2.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


def test_category_ids_stop_at_the_first_empty_level() -> None:
    entity = {"cat_l1": 5, "cat_l2": 50, "cat_l3": 0, "cat_l4": 0}
    assert category_ids_of(entity) == [5, 50]
