"""The label space of a model and hierarchy-consistent scores and decisions.

The *label map* is every category the model scores (those seen in training,
closed under ancestors), in output order; the *leaf set* is the exclusive head's
classes (the human-label categories). Given raw head probabilities:

- the exclusive head's score of a category is the sum over leaf-set members in
  its subtree (a parent holds all its children's mass);
- the independent head's score of a category is the max over its subtree
  (a product in a child is in the parent);
- both are monotone (parent ≥ child), so their convex mix is too.

Decisions: a category is accepted when its score reaches its threshold, and an
accepted category makes all its ancestors accepted. The prediction is the
deepest accepted category on the path to the best-scoring leaf.

Everything here is numpy and deterministic; ``LabelSpace`` round-trips through
the model's metadata so Triton needs no taxonomy file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catstream.taxonomy import Taxonomy


@dataclass(frozen=True)
class LabelEntry:
    id: int
    path: str
    level: int
    parent: int  # index of the parent in the label map, -1 for a top-level category


@dataclass(frozen=True)
class LabelSpace:
    entries: tuple[LabelEntry, ...]
    leaf_ids: tuple[int, ...]
    _position: dict[int, int] = field(init=False, repr=False, compare=False)
    _leaf_positions: NDArray[Any] = field(init=False, repr=False, compare=False)
    _levels: tuple[_LevelStep, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        position = {e.id: i for i, e in enumerate(self.entries)}
        object.__setattr__(self, "_position", position)
        missing = [i for i in self.leaf_ids if i not in position]
        if missing:
            raise ValueError(f"leaf ids {missing} are not in the label map; rebuild the model")
        leaf_positions = np.asarray([position[i] for i in self.leaf_ids], dtype=np.int64)
        leaf_positions.setflags(write=False)
        object.__setattr__(self, "_leaf_positions", leaf_positions)
        object.__setattr__(self, "_levels", _level_steps(self))

    # ------------------------------------------------------------- building

    @classmethod
    def build(
        cls, taxonomy: Taxonomy, categories: Iterable[int], leaf_ids: Iterable[int] = ()
    ) -> LabelSpace:
        """Label map = ``categories`` + leaf ids, closed under ancestors, in taxonomy order."""
        leaves = sorted(set(leaf_ids), key=_order_key(taxonomy))
        closed = taxonomy.closure([*categories, *leaves])
        ordered = sorted(closed, key=_order_key(taxonomy))
        position = {c: i for i, c in enumerate(ordered)}
        entries = []
        for category_id in ordered:
            parent = taxonomy.parent(category_id)
            entries.append(
                LabelEntry(
                    id=category_id,
                    path=taxonomy.path_str(category_id),
                    level=taxonomy.level(category_id),
                    parent=-1 if parent is None else position[parent],
                )
            )
        if not leaves:
            # No human labels: the label map's own leaves are the candidates.
            has_child = {e.parent for e in entries}
            leaves = [e.id for i, e in enumerate(entries) if i not in has_child]
        return cls(entries=tuple(entries), leaf_ids=tuple(leaves))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_map": [
                {"id": e.id, "path": e.path, "level": e.level, "parent": e.parent}
                for e in self.entries
            ],
            "leaf_ids": list(self.leaf_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSpace:
        entries = tuple(
            LabelEntry(
                id=int(e["id"]), path=str(e["path"]), level=int(e["level"]), parent=int(e["parent"])
            )
            for e in data["label_map"]
        )
        return cls(entries=entries, leaf_ids=tuple(int(i) for i in data["leaf_ids"]))

    # --------------------------------------------------------------- lookup

    @property
    def label_ids(self) -> list[int]:
        return [e.id for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def index(self, category_id: int) -> int:
        return self._position[category_id]

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._position

    @property
    def leaf_positions(self) -> NDArray[Any]:
        """Label-map index of each leaf-set member, in ``leaf_ids`` order (read-only)."""
        return self._leaf_positions

    def path_indices(self, index: int) -> list[int]:
        """Label-map indices from the top level down to ``index``."""
        chain = [index]
        while self.entries[chain[-1]].parent >= 0:
            chain.append(self.entries[chain[-1]].parent)
        return chain[::-1]

    @cached_property
    def depth(self) -> int:
        """Levels of the deepest category (levels count from 1 at the top)."""
        return max((e.level for e in self.entries), default=0)

    def path_scores(self, scores: NDArray[Any], category_ids: NDArray[Any]) -> NDArray[Any]:
        """float32 ``[n, depth]``: row i's ``scores`` along ``category_ids[i]``'s path, top
        level first, zeros after its depth and for ids outside the label map (-1: none)."""
        out = np.zeros((len(category_ids), self.depth), dtype=np.float32)
        for row, category_id in enumerate(category_ids.tolist()):
            if category_id in self._position:
                chain = self.path_indices(self._position[category_id])
                out[row, : len(chain)] = scores[row, chain]
        return out

    def closure_vector(self, category_ids: Iterable[int]) -> NDArray[Any]:
        """0/1 vector over the label map: the categories and their ancestors."""
        vector = np.zeros(len(self.entries), dtype=np.float32)
        for category_id in category_ids:
            if category_id in self._position:
                vector[self.path_indices(self._position[category_id])] = 1.0
        return vector

    # --------------------------------------------------------------- scores

    def subtree_sum(self, leaf_probabilities: NDArray[Any]) -> NDArray[Any]:
        """[n, leaves] softmax probabilities → [n, labels] subtree masses.

        Folded up the tree like ``subtree_max``, not multiplied by a [leaves, labels]
        0/1 matrix: over the full Google taxonomy that matrix held ~100 MB per loaded
        version, and reading it cost the served categoriser ~26 ms per call at batch 3.
        """
        values = np.zeros((leaf_probabilities.shape[0], len(self.entries)), dtype=np.float32)
        values[:, self._leaf_positions] = leaf_probabilities
        return self._propagate_up(values, np.add)

    def subtree_max(self, probabilities: NDArray[Any]) -> NDArray[Any]:
        """[n, labels] independent probabilities → each category's max over its subtree."""
        scores = np.array(probabilities, dtype=np.float32, copy=True)
        return self._propagate_up(scores, np.maximum)

    def accepted(self, scores: NDArray[Any], thresholds: NDArray[Any]) -> NDArray[Any]:
        """Boolean [n, labels]: score ≥ threshold, closed upwards (a child implies its parent)."""
        return self._propagate_up(scores >= thresholds[None, :], np.logical_or)

    def _propagate_up(self, values: NDArray[Any], combine: np.ufunc) -> NDArray[Any]:
        """Fold every category's value into its parent's, deepest level first, in place.

        One ``reduceat`` per level instead of a Python loop over every label:
        over the full Google taxonomy (5,582 labels) the loop cost the served
        categoriser ~20 ms per call at batch 1 for each of its two uses.
        """
        for step in self._levels:
            folded = combine.reduceat(values[:, step.children], step.starts, axis=1)
            values[:, step.parents] = combine(values[:, step.parents], folded)
        return values


@dataclass(frozen=True)
class _LevelStep:
    """One depth of the tree: its categories grouped by parent, for ``reduceat``."""

    children: NDArray[Any]  # label-map indices at this depth, sorted by parent
    parents: NDArray[Any]  # each distinct parent once, in the children's order
    starts: NDArray[Any]  # where each parent's run of children begins in ``children``


def _level_steps(space: LabelSpace) -> tuple[_LevelStep, ...]:
    """Per depth (deepest first), the children-by-parent runs ``_propagate_up`` folds.

    Depth comes from the parent chain rather than ``level`` so a label map whose
    stored levels disagree with its parents still folds every child before its parent.
    """
    entries = space.entries
    depth = [len(space.path_indices(index)) - 1 for index in range(len(entries))]
    steps = []
    for level in range(max(depth, default=0), 0, -1):
        children = np.asarray([i for i, d in enumerate(depth) if d == level], dtype=np.int64)
        parent_of = np.asarray([entries[i].parent for i in children], dtype=np.int64)
        order = np.argsort(parent_of, kind="stable")
        parents, starts = np.unique(parent_of[order], return_index=True)
        steps.append(_LevelStep(children=children[order], parents=parents, starts=starts))
    return tuple(steps)


@dataclass(frozen=True)
class Decision:
    top_ids: NDArray[Any]  # int64 [n, k]: leaf-set ids, best first (-1 padding)
    top_scores: NDArray[Any]  # float32 [n, k]
    predicted: NDArray[Any]  # int64 [n]: deepest accepted id on the best path, -1 if none
    confidence: NDArray[Any]  # float32 [n]: the predicted category's score (top leaf's if none)


def decide(
    space: LabelSpace,
    scores: NDArray[Any],
    thresholds: NDArray[Any],
    k: int = 5,
    leaf_scores: NDArray[Any] | None = None,
) -> Decision:
    """Top-k leaves, and the deepest accepted category on the path to the best leaf.

    ``leaf_scores`` [n, leaves] ranks the leaf-set members by their *own*
    probability; without it they are ranked by ``scores`` (subtree masses),
    which is the same thing unless a leaf-set member is an inner node (a label
    on "Costumes" while others are on "Costumes > Adults"): its subtree mass
    holds its children's, so it would always outrank them.
    """
    n = scores.shape[0]
    leaf_positions = space.leaf_positions
    if leaf_scores is None:
        leaf_scores = scores[:, leaf_positions]
    # Stable sort on -score keeps ties in label-map order: deterministic output.
    order = np.argsort(-leaf_scores, axis=1, kind="stable")[:, :k]
    top_ids = np.full((n, k), -1, dtype=np.int64)
    top_scores = np.zeros((n, k), dtype=np.float32)
    ids = np.asarray(space.leaf_ids, dtype=np.int64)
    width = order.shape[1]
    top_ids[:, :width] = ids[order]
    top_scores[:, :width] = np.take_along_axis(leaf_scores, order, axis=1)

    accepted = space.accepted(scores, thresholds)
    predicted = np.full(n, -1, dtype=np.int64)
    confidence = top_scores[:, 0].copy()
    for row in range(n):
        if width == 0:
            break
        best_leaf = int(leaf_positions[order[row, 0]])
        for index in reversed(space.path_indices(best_leaf)):
            if accepted[row, index]:
                predicted[row] = space.entries[index].id
                confidence[row] = scores[row, index]
                break
    return Decision(top_ids, top_scores, predicted, confidence)


def mix_scores(
    space: LabelSpace,
    independent: NDArray[Any],
    exclusive: NDArray[Any],
    exclusive_weight: float,
) -> NDArray[Any]:
    """Hierarchy-consistent scores: ``w * subtree_sum(exclusive) + (1-w) * subtree_max(indep)``."""
    parts: list[NDArray[Any]] = []
    if exclusive_weight > 0.0:
        parts.append(exclusive_weight * space.subtree_sum(exclusive))
    if exclusive_weight < 1.0:
        parts.append((1.0 - exclusive_weight) * space.subtree_max(independent))
    mixed = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    # Float sums can overshoot 1, or leave a parent an ulp below a child when BLAS
    # adds in another order; a last max pass makes consistency exact.
    return space.subtree_max(np.clip(mixed, 0.0, 1.0))


def _order_key(taxonomy: Taxonomy) -> Any:
    rank = {c: i for i, c in enumerate(taxonomy.ids)}
    return lambda category_id: rank[category_id]


def category_scores(
    space: LabelSpace, scores: Sequence[float], category_id: int
) -> list[tuple[LabelEntry, float]]:
    """The path of ``category_id`` root→self with each category's score."""
    path = space.path_indices(space.index(category_id))
    return [(space.entries[i], float(scores[i])) for i in path]
