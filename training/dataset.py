"""Training examples, their targets, and stratified train/validation/test splits.

An ``Example`` is a normalised product with either a human label (exclusive:
one category, which fixes every other category to "no") or rule labels
(positive-only, independent, closed under ancestors: a category no rule fired
is *unknown*, not negative).

Targets of the independent head follow from that:

- human label ``h``: closure(h) positive, every other category negative,
  except categories below ``h`` (unknown: the human stopped at ``h``);
- rule labels ``P``: ``P`` positive; a category outside ``P`` is a *known*
  negative when it is a sibling of a positive under a positive parent (or a
  top-level category beside a positive top level), and so are its descendants
  (cousins); every other category is unknown and gets only a small weight
  (``unknown_weight``), so the head is not taught "missing label = no".
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from schemas.events import NormalisedProduct
from triton_models.categoriser.contract import raw_category_text
from triton_models.categoriser.features import ProductFields
from triton_models.categoriser.hierarchy import LabelSpace

DEFAULT_UNKNOWN_WEIGHT = 0.02


@dataclass(frozen=True)
class Example:
    product: NormalisedProduct
    human: int | None = None
    rules: frozenset[int] = field(default_factory=frozenset)

    @property
    def fields(self) -> ProductFields:
        return product_fields(self.product)


def product_fields(product: NormalisedProduct) -> ProductFields:
    """The model's text fields; RAW_CATEGORY as the Triton request sends it."""
    return ProductFields(
        title=product.title or "",
        brand=product.brand or "",
        raw_category=raw_category_text(product),
        description=product.description or "",
    )


@dataclass(frozen=True)
class Split:
    train: NDArray[Any]  # int64 row indices
    validation: NDArray[Any]
    test: NDArray[Any]


def stratified_split(
    keys: Sequence[Hashable],
    validation_fraction: float = 0.15,
    test_fraction: float = 0.10,
    seed: int = 13,
) -> Split:
    """Per-class shuffled split with a fixed seed (classes visited in sorted order).

    Every class keeps at least one training row; rounding is per class, so tiny
    classes land wholly in training rather than only in validation.
    """
    if validation_fraction < 0 or test_fraction < 0 or validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation and test fractions must be ≥ 0 and sum to less than 1, got "
            f"{validation_fraction} and {test_fraction}"
        )
    by_class: dict[str, list[int]] = defaultdict(list)
    for row, key in enumerate(keys):
        by_class[repr(key)].append(row)
    rng = np.random.default_rng(seed)
    train: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for key in sorted(by_class):
        rows = np.asarray(by_class[key], dtype=np.int64)
        rng.shuffle(rows)
        n = len(rows)
        n_test = round(n * test_fraction)
        n_val = round(n * validation_fraction)
        if n_test + n_val >= n:
            n_test, n_val = 0, 0 if n < 3 else max(0, min(n_val, n - 1))
        test.extend(rows[:n_test].tolist())
        validation.extend(rows[n_test : n_test + n_val].tolist())
        train.extend(rows[n_test + n_val :].tolist())
    return Split(
        train=np.asarray(sorted(train), dtype=np.int64),
        validation=np.asarray(sorted(validation), dtype=np.int64),
        test=np.asarray(sorted(test), dtype=np.int64),
    )


def stratum(example: Example) -> tuple[str, int]:
    """The split stratum: the human label, else the deepest rule label, else none."""
    if example.human is not None:
        return ("human", example.human)
    if example.rules:
        return ("rules", max(example.rules))
    return ("none", 0)


@dataclass(frozen=True)
class Targets:
    exclusive: NDArray[Any]  # int64 [n]: leaf-set index, -1 without a human label
    independent: NDArray[Any]  # float32 [n, labels]: 1 positive, 0 negative/unknown
    weights: NDArray[Any]  # float32 [n, labels]: 1 known, unknown_weight unknown, 0 ignored


def build_targets(
    examples: Sequence[Example],
    space: LabelSpace,
    unknown_weight: float = DEFAULT_UNKNOWN_WEIGHT,
) -> Targets:
    n, c = len(examples), len(space)
    exclusive = np.full(n, -1, dtype=np.int64)
    independent = np.zeros((n, c), dtype=np.float32)
    weights = np.full((n, c), unknown_weight, dtype=np.float32)
    leaf_index = {leaf: i for i, leaf in enumerate(space.leaf_ids)}
    children: dict[int, list[int]] = defaultdict(list)
    for index, entry in enumerate(space.entries):
        children[entry.parent].append(index)
    for row, example in enumerate(examples):
        if example.human is not None:
            exclusive[row] = leaf_index.get(example.human, -1)
            positive = space.closure_vector([example.human])
            independent[row] = positive
            weights[row] = 1.0
            below = _subtree(children, space.index(example.human))[1:]
            weights[row, below] = 0.0
            continue
        if not example.rules:
            continue
        positive = space.closure_vector(example.rules)
        independent[row] = positive
        weights[row, positive > 0] = 1.0
        for negative in _known_negatives(children, positive):
            weights[row, _subtree(children, negative)] = 1.0
    return Targets(exclusive, independent, weights)


def _known_negatives(children: dict[int, list[int]], positive: NDArray[Any]) -> list[int]:
    """Siblings of positives under a positive parent (top level counts as positive)."""
    negatives: list[int] = []
    parents = [-1, *np.flatnonzero(positive > 0).tolist()]
    for parent in parents:
        kids = children.get(parent, [])
        if any(positive[k] > 0 for k in kids):
            negatives.extend(k for k in kids if positive[k] == 0)
    return negatives


def _subtree(children: dict[int, list[int]], index: int) -> list[int]:
    found = [index]
    stack = list(children.get(index, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def data_hash(lines: Sequence[bytes]) -> str:
    """sha256 over the training inputs' bytes, for the model's metadata."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line)
        digest.update(b"\n")
    return digest.hexdigest()
