"""Offer groups: components of accepted pairs, split by conflicts, with stable ids (pure)."""

from __future__ import annotations

from streams.offer_groups import GraphNode, assign_groups


def graph(
    edges: dict[tuple[str, str], float],
    conflicts: tuple[tuple[str, str], ...] = (),
    groups: dict[str, str] | None = None,
    alone: tuple[str, ...] = (),
) -> dict[str, GraphNode]:
    nodes: dict[str, GraphNode] = {}
    for name in {p for pair in edges for p in pair} | set(alone):
        nodes[name] = GraphNode(name, offer_group=(groups or {}).get(name))
    for (a, b), score in edges.items():
        nodes[a].edges[b] = score
        nodes[b].edges[a] = score
    for a, b in conflicts:
        nodes[a].conflicts.add(b)
    return nodes


def test_connected_products_share_the_smallest_id() -> None:
    assigned = assign_groups(graph({("b", "c"): 0.9, ("c", "d"): 0.8}, alone=("e",)))
    assert assigned == {"b": "b", "c": "b", "d": "b", "e": "e"}


def test_a_conflict_splits_a_chain_at_its_weaker_link() -> None:
    # a–b strong, b–c weak; a and c are variants (same merchant, another size).
    assigned = assign_groups(graph({("a", "b"): 0.95, ("b", "c"): 0.7}, conflicts=(("a", "c"),)))
    assert assigned["a"] == assigned["b"] != assigned["c"]


def test_ids_survive_a_regroup_and_a_member_leaving() -> None:
    before = {"a": "a", "b": "a", "c": "a"}
    same = assign_groups(graph({("a", "b"): 0.9, ("b", "c"): 0.9}, groups=before))
    assert set(same.values()) == {"a"}
    # "a" is deleted: b and c keep the id they had, not "b".
    without_a = assign_groups(graph({("b", "c"): 0.9}, groups=before))
    assert without_a == {"b": "a", "c": "a"}


def test_a_product_that_stops_matching_leaves_with_its_own_id() -> None:
    before = {"a": "a", "b": "a", "c": "a"}
    assigned = assign_groups(graph({("a", "b"): 0.9}, groups=before, alone=("c",)))
    assert assigned == {"a": "a", "b": "a", "c": "c"}


def test_a_split_group_keeps_its_id_on_the_larger_part() -> None:
    before = {p: "p1" for p in ("p1", "p2", "p3", "p4", "p5")}
    assigned = assign_groups(
        graph({("p1", "p2"): 0.9, ("p3", "p4"): 0.9, ("p4", "p5"): 0.9}, groups=before)
    )
    assert assigned["p3"] == assigned["p4"] == assigned["p5"] == "p1"
    assert assigned["p1"] == assigned["p2"] == "p2"
