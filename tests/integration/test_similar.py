"""Similar products against a real Milvus: category levels, text/image/both, errors.

The vectors are built so that the globally nearest product to the query sits in
another top-level category: it must appear at level 0 and vanish at levels 1
and 2. Rows are written through the real ``MilvusSink``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from catstream.cli import build_parser
from catstream.settings import Settings
from workers.milvus_collection import IMAGE_DIM, TEXT_DIM
from workers.milvus_sink import MilvusSink
from workers.similar import ProductNotIndexed, SimilarError, SimilarProducts
from workers.sink import SinkMessage

QUERY_ID = 'query "one"'  # a quote in the id exercises filter escaping


def basis(dim: int, *weights: tuple[int, float]) -> list[float]:
    vector = [0.0] * dim
    for index, weight in weights:
        vector[index] += weight
    return vector


def text(*weights: tuple[int, float]) -> list[float]:
    return basis(TEXT_DIM, *weights)


def image(*weights: tuple[int, float]) -> list[float]:
    return basis(IMAGE_DIM, *weights)


# product id → (category ids, text vector, image vector or None)
CATALOGUE: dict[str, tuple[list[int], list[float], list[float] | None]] = {
    QUERY_ID: ([1, 11], text((0, 1.0)), image((0, 1.0))),
    # Nearest of all, but in another top-level category.
    "x_other_top": ([2, 21], text((0, 1.0), (1, 0.01)), image((0, 1.0))),
    # Same top level, other level-2 category; no image.
    "z_same_l1": ([1, 12], text((0, 1.0), (1, 0.3)), None),
    # Same level-2 category as the query.
    "y_same_l2": ([1, 11], text((0, 1.0), (1, 0.6)), image((0, 1.0), (1, 0.2))),
    "w_same_l2_deeper": ([1, 11, 111], text((0, 1.0), (2, 1.0)), image((1, 1.0))),
    # Far away in every sense.
    "far_other": ([3, 31], text((5, 1.0)), image((7, 1.0))),
    "no_image": ([1, 11], text((0, 1.0), (3, 0.5)), None),
}


def embedding_message(product_id: str) -> SinkMessage:
    categories, text_vector, image_vector = CATALOGUE[product_id]
    event: dict[str, Any] = {
        "product_id": product_id,
        "model_version": "test",
        "text_embedding": text_vector,
        "image_embedding": image_vector,
        "category_ids": categories,
        "category_path": [f"c{c}" for c in categories],
        "fingerprint": product_id,
    }
    return SinkMessage("embeddings", 0, 0, product_id.encode(), json.dumps(event).encode(), 0)


@pytest.fixture
def similar(topic_settings: Settings) -> Iterator[SimilarProducts]:
    sink = MilvusSink(topic_settings)
    for product_id in CATALOGUE:
        sink.add(embedding_message(product_id))
    sink.flush()
    sink.close()
    service = SimilarProducts(topic_settings)
    yield service
    service.client.drop_collection(topic_settings.milvus_collection)


def ids(results: list[Any]) -> list[str]:
    return [r.product_id for r in results]


def cos(a: float, b: float) -> float:
    """Cosine between unit x and a*x + b*y."""
    return a / math.hypot(a, b)


def test_level_zero_is_global_and_finds_the_nearest_in_another_category(
    similar: SimilarProducts,
) -> None:
    results = similar.similar(QUERY_ID, k=10, level=0, by="text")
    assert ids(results)[:3] == ["x_other_top", "z_same_l1", "no_image"]
    assert QUERY_ID not in ids(results)
    assert results[0].score == pytest.approx(cos(1.0, 0.01), abs=1e-4)
    assert results[0].category_ids == [2, 21]


def test_level_one_excludes_other_top_level_categories(similar: SimilarProducts) -> None:
    results = similar.similar(QUERY_ID, k=10, level=1, by="text")
    assert ids(results) == ["z_same_l1", "no_image", "y_same_l2", "w_same_l2_deeper"]
    assert all(r.category_ids[0] == 1 for r in results)


def test_level_two_keeps_only_the_same_second_level_category(similar: SimilarProducts) -> None:
    results = similar.similar(QUERY_ID, k=10, level=2, by="text")
    assert ids(results) == ["no_image", "y_same_l2", "w_same_l2_deeper"]
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert results[1].category_path == "c1 > c11"


def test_k_bounds_the_result(similar: SimilarProducts) -> None:
    assert ids(similar.similar(QUERY_ID, k=1, level=0)) == ["x_other_top"]


def test_image_search_only_returns_products_with_images(similar: SimilarProducts) -> None:
    results = similar.similar(QUERY_ID, k=10, level=1, by="image")
    assert ids(results) == ["y_same_l2", "w_same_l2_deeper"]
    assert results[0].image_score == pytest.approx(cos(1.0, 0.2), abs=1e-4)
    assert ids(similar.similar(QUERY_ID, k=10, level=0, by="image"))[0] == "x_other_top"


def test_both_averages_text_and_image_where_both_exist(similar: SimilarProducts) -> None:
    results = {r.product_id: r for r in similar.similar(QUERY_ID, k=10, level=1, by="both")}
    assert set(results) == {"z_same_l1", "no_image", "y_same_l2", "w_same_l2_deeper"}
    assert results["z_same_l1"].score == pytest.approx(cos(1.0, 0.3), abs=1e-4)
    assert results["z_same_l1"].image_score is None
    expected_y = (cos(1.0, 0.6) + cos(1.0, 0.2)) / 2
    assert results["y_same_l2"].score == pytest.approx(expected_y, abs=1e-4)
    assert results["w_same_l2_deeper"].score == pytest.approx((cos(1.0, 1.0) + 0.0) / 2, abs=1e-4)


def test_both_without_a_query_image_falls_back_to_text(similar: SimilarProducts) -> None:
    by_both = similar.similar("no_image", k=10, level=2, by="both")
    by_text = similar.similar("no_image", k=10, level=2, by="text")
    assert ids(by_both) == ids(by_text)
    assert [r.score for r in by_both] == pytest.approx([r.score for r in by_text], abs=1e-4)


def test_image_search_for_a_product_without_image_says_to_use_text(
    similar: SimilarProducts,
) -> None:
    with pytest.raises(SimilarError, match="no image embedding: use --by text"):
        similar.similar("z_same_l1", by="image")


def test_unknown_product_points_at_the_embeddings_topic_and_sink_lag(
    similar: SimilarProducts,
) -> None:
    with pytest.raises(ProductNotIndexed, match=r"not indexed yet.*embeddings.*Milvus sink lag"):
        similar.similar("never-published")


def test_a_missing_collection_says_to_run_the_sink(topic_settings: Settings) -> None:
    service = SimilarProducts(topic_settings)
    with pytest.raises(ProductNotIndexed, match="does not exist yet: run the Milvus sink"):
        service.similar("anything")


def test_a_level_deeper_than_the_product_path_is_refused(similar: SimilarProducts) -> None:
    with pytest.raises(SimilarError, match="only to level 2: use --level 2"):
        similar.similar(QUERY_ID, level=3)


def test_cli_prints_the_ranked_table_and_fails_clearly(
    similar: SimilarProducts, topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> int:
        args = build_parser(["similar", *argv]).parse_args(["similar", *argv])
        return int(args.handler(args, topic_settings))

    assert run(QUERY_ID, "--k", "5", "--level", "2") == 0
    table = capsys.readouterr().out
    assert table.index("no_image") < table.index("y_same_l2") < table.index("w_same_l2_deeper")
    assert "x_other_top" not in table

    assert run(QUERY_ID, "--level", "0", "--json", "--k", "1") == 0
    line = json.loads(capsys.readouterr().out)
    assert line["product_id"] == "x_other_top"

    assert run("never-published") == 1
    assert "not indexed yet" in capsys.readouterr().err


# Expression syntax in ids: each is one product's id, never part of a filter.
HOSTILE_IDS = ["x'] or product_id not in ['", 'q" or product_id != "', "back\\slash\\", "{ids}"]


def test_ids_with_expression_syntax_find_their_own_neighbours_only(
    similar: SimilarProducts, topic_settings: Settings
) -> None:
    sink = MilvusSink(topic_settings)
    for product_id in HOSTILE_IDS:  # copies of the query product under hostile ids
        message = embedding_message(QUERY_ID)
        event = {**json.loads(message.value or b"{}"), "product_id": product_id}
        body = json.dumps(event).encode()
        sink.add(SinkMessage("embeddings", 0, 0, product_id.encode(), body, 0))
    sink.flush()
    sink.close()
    plain = ids(similar.similar(QUERY_ID, k=20, level=2))
    for product_id in HOSTILE_IDS:
        found = ids(similar.similar(product_id, k=20, level=2))
        assert product_id not in found  # excludes itself, and only itself
        others = set(HOSTILE_IDS) - {product_id}
        expected = [*(p for p in plain if p not in HOSTILE_IDS), QUERY_ID, *others]
        assert sorted(found) == sorted(expected)


def test_a_crafted_id_that_matches_everything_is_simply_not_indexed(
    similar: SimilarProducts,
) -> None:
    """Once, ``x'] or product_id not in ['`` read another product's row (the whole collection)."""
    for crafted in ["x'] or product_id not in ['", 'x" or product_id != "', "' or 1 == 1 or '"]:
        with pytest.raises(ProductNotIndexed, match="not indexed yet"):
            similar.similar(crafted, k=5, level=0)


def test_the_cli_treats_a_crafted_id_as_an_id(
    similar: SimilarProducts, topic_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["similar", "x'] or product_id not in ['", "--level", "0"]
    args = build_parser(argv).parse_args(argv)
    assert int(args.handler(args, topic_settings)) == 1
    assert "not indexed yet" in capsys.readouterr().err
