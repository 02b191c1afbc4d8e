"""Filter templates rendered for milvus-lite: any value parses back as exactly that value.

milvus-lite's own expression parser is the oracle, so a literal it would read as
anything but the bound value (an id that closes its quotes, say) fails here.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from milvus_lite.search.filter import parse_expr
from milvus_lite.search.filter.ast import CmpOp, InOp, IntLit, StringLit
from pymilvus.client.prepare import Prepare

from workers.milvus_filters import Filter, TemplateError, render, render_proto

HOSTILE_IDS = [
    "x'] or product_id not in ['",
    'x"] or product_id not in ["',
    "a\\",
    "\\'",
    '\\"',
    "{ids}",
    "} or {",
    "line\nbreak\r\ttab",
    "[[[",
    "' or 1 == 1 or '",
    "ünï©ødé ☃",
]
ids = st.lists(st.text(), max_size=8)


def in_values(expr: str) -> list[object]:
    tree = parse_expr(expr)
    assert isinstance(tree, InOp)
    assert not tree.negate
    values = []
    for element in tree.values.elements:
        assert isinstance(element, (StringLit, IntLit))
        values.append(element.value)
    return values


@given(ids)
def test_any_list_of_strings_renders_to_exactly_those_strings(values: list[str]) -> None:
    assert in_values(render("product_id in {ids}", {"ids": values})) == values


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_ids_stay_one_value(hostile: str) -> None:
    assert in_values(render("product_id in {ids}", {"ids": [hostile]})) == [hostile]
    tree = parse_expr(render("product_id != {pid}", {"pid": hostile}))
    assert isinstance(tree, CmpOp)
    assert isinstance(tree.right, StringLit)
    assert tree.right.value == hostile


@given(st.text(), st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_values_as_pymilvus_sends_them_round_trip(pid: str, cat: int) -> None:
    """Through the protobuf ``expr_template_values`` pymilvus builds from filter_params."""
    protos = Prepare.prepare_expression_template({"pid": pid, "ids": [pid, pid], "cat": cat})
    rendered = render_proto("product_id != {pid} and cat_l1 == {cat}", protos)
    tree = parse_expr(rendered)
    assert tree.operands[0].right.value == pid
    assert in_values(render_proto("product_id in {ids}", protos)) == [pid, pid]


def test_placeholders_inside_string_literals_are_left_alone() -> None:
    assert render('name == "{ids}" or id in {ids}', {"ids": [1]}) == 'name == "{ids}" or id in [1]'


@pytest.mark.parametrize("expr", ["id in {missing}", "id in {ids", "id in {1x}", 'id == "open'])
def test_a_template_that_cannot_be_rendered_is_refused(expr: str) -> None:
    with pytest.raises(TemplateError):
        render(expr, {"ids": [1]})


def test_a_filter_binds_its_values_or_renders_them_escaped() -> None:
    by_id = Filter(
        "product_id in {ids} and cat_l1 == {cat}", {"ids": ["x'] or 1 == 1 or ['"], "cat": 3}
    )
    assert by_id.kwargs(True) == {"filter": by_id.expr, "filter_params": by_id.params}
    rendered = by_id.kwargs(False)
    assert set(rendered) == {"filter"}
    tree = parse_expr(rendered["filter"])
    assert [e.value for e in tree.operands[0].values.elements] == ["x'] or 1 == 1 or ['"]
    assert by_id.also("has_image == true").expr.endswith(" and has_image == true")
