"""Which category each product trains the linear categoriser on: human labels, then rule labels.

A human label always wins. A product without one trains on its rule label
(``--rules`` over ``--unlabelled`` products) when the rules that fired name one
path (their deepest category) and the user gave no label in that part of the
tree: not that category, not an ancestor of a labelled one, not below a
labelled one. So the starter rules bootstrap the categories the user has not
labelled yet and never compete with the user's own labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from catstream.taxonomy import Taxonomy
from training.dataset import Example


@dataclass(frozen=True)
class Targets:
    categories: dict[int, int]  # example row → category id it trains on
    human: int
    weak: int  # rule labels used
    weak_dropped: int  # rule labels where the user has labels (or the rules disagree)


def rule_category(rules: frozenset[int], taxonomy: Taxonomy) -> int | None:
    """The deepest of ``rules`` when they lie on one path, else None (the rules disagree)."""
    if not rules:
        return None
    deepest = max(rules, key=taxonomy.level)
    path = set(taxonomy.ancestors_and_self(deepest))
    return deepest if rules <= path else None


def training_targets(examples: Sequence[Example], taxonomy: Taxonomy) -> Targets:
    human = {e.human for e in examples if e.human is not None}
    covered = taxonomy.closure(human)  # labelled categories and their ancestors
    categories: dict[int, int] = {}
    weak = dropped = 0
    for row, example in enumerate(examples):
        if example.human is not None:
            categories[row] = example.human
            continue
        if not example.rules:
            continue
        category = rule_category(example.rules, taxonomy)
        if (
            category is None
            or category in covered
            or any(a in human for a in taxonomy.ancestors_and_self(category))
        ):
            dropped += 1
            continue
        categories[row] = category
        weak += 1
    return Targets(categories, len(categories) - weak, weak, dropped)
