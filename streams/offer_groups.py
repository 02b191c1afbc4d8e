"""Offer groups from accepted pairs: connected components, split by conflicts, with stable ids.

Pure. Input: the products of one connected region of the match graph (every
product reachable over accepted edges from the ones that changed), each with
its edges (neighbour → score), its conflicts (neighbours it must never share a
group with) and the group id it had. Output: product → group id.

- Components are built greedily from the strongest edge down (union-find); an
  edge that would put two conflicting products into one group is skipped, so a
  chain A–B–C where A and C are variants (same merchant, another size) is split
  between the weaker link's ends instead of merging everything.
- Ids are stable: a group takes the id most of its members already had (ties:
  the smallest id), unless a larger group of the region claimed it first; a
  group with no usable old id takes its smallest member's product id. A re-feed
  that gives the same groups therefore gives the same ids, and a member leaving
  does not rename the group the others stay in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class GraphNode:
    product_id: str
    edges: dict[str, float] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)
    offer_group: str | None = None


class _Groups:
    def __init__(self, members: list[str], conflicts: Mapping[str, set[str]]) -> None:
        self.parent = {m: m for m in members}
        self.members = {m: {m} for m in members}
        self.conflicts = {m: set(conflicts.get(m, ())) for m in members}

    def find(self, item: str) -> str:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.conflicts[ra] & self.members[rb]:
            return False
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] |= self.members.pop(rb)
        self.conflicts[ra] |= self.conflicts.pop(rb)
        return True


def assign_groups(nodes: Mapping[str, GraphNode]) -> dict[str, str]:
    """product id → offer group id, for every product in ``nodes``."""
    members = sorted(nodes)
    conflicts: dict[str, set[str]] = {m: set() for m in members}
    for node in nodes.values():
        for other in node.conflicts:
            if other in conflicts:
                conflicts[node.product_id].add(other)
                conflicts[other].add(node.product_id)
    edges: dict[tuple[str, str], float] = {}
    for node in nodes.values():
        for other, score in node.edges.items():
            if other in nodes and other != node.product_id:
                key = (min(node.product_id, other), max(node.product_id, other))
                # Both ends keep the edge; the weaker score decides (both must agree).
                edges[key] = min(score, edges.get(key, score))
    groups = _Groups(members, conflicts)
    for (a, b), _ in sorted(edges.items(), key=lambda item: (-item[1], item[0])):
        groups.union(a, b)
    components: dict[str, list[str]] = {}
    for member in members:
        components.setdefault(groups.find(member), []).append(member)
    return _stable_ids(list(components.values()), nodes)


def _stable_ids(components: list[list[str]], nodes: Mapping[str, GraphNode]) -> dict[str, str]:
    assigned: dict[str, str] = {}
    taken: set[str] = set()
    for component in sorted(components, key=lambda c: (-len(c), min(c))):
        votes = Counter(nodes[m].offer_group for m in component if nodes[m].offer_group is not None)
        ranked = sorted(votes.items(), key=lambda item: (-item[1], item[0]))
        old = next((gid for gid, _ in ranked if gid not in taken), None)
        group = old if old is not None else _fresh_id(component, taken)
        taken.add(group)
        for member in component:
            assigned[member] = group
    return assigned


def _fresh_id(component: list[str], taken: set[str]) -> str:
    for member in sorted(component):
        if member not in taken:
            return member
    return f"{min(component)}~{len(taken)}"  # pragma: no cover (every member id taken)
