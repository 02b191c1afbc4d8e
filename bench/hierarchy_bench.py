"""The served categoriser's hierarchy folding over the full Google taxonomy, ms per call.

``python -m bench.hierarchy_bench``: ``LabelSpace.subtree_max`` and ``accepted``
(each served request runs both) at the batch sizes the stream sends, beside the
per-label Python loop they replaced (issue 10's latency at small batches).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from triton_models.categoriser.hierarchy import LabelSpace

CALLS = 20


def per_label_loop(space: LabelSpace) -> Callable[[NDArray[Any]], NDArray[Any]]:
    """The replaced implementation: one max per label, deepest first."""
    order = sorted(range(len(space.entries)), key=lambda i: -space.entries[i].level)

    def fold(probabilities: NDArray[Any]) -> NDArray[Any]:
        scores = probabilities.copy()
        for index in order:
            parent = space.entries[index].parent
            if parent >= 0:
                np.maximum(scores[:, parent], scores[:, index], out=scores[:, parent])
        return scores

    return fold


def ms_per_call(fold: Callable[[NDArray[Any]], NDArray[Any]], values: NDArray[Any]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        fold(values)
    return 1000 * (time.perf_counter() - started) / CALLS


def main() -> None:
    taxonomy = Taxonomy.load(Settings().taxonomy_path)
    space = LabelSpace.build(taxonomy, taxonomy.ids)
    loop = per_label_loop(space)
    thresholds = np.full(len(space), 0.5, dtype=np.float32)
    print(f"{len(space):,} labels; ms per call over {CALLS} calls")
    print("rows | per-label loop | subtree_max | accepted")
    for rows in (1, 3, 64):
        values = np.random.default_rng(rows).random((rows, len(space)), dtype=np.float32)
        assert (loop(values) == space.subtree_max(values)).all()
        before = ms_per_call(loop, values)
        after = ms_per_call(space.subtree_max, values)
        accepted = ms_per_call(lambda v: space.accepted(v, thresholds), values)
        print(f"{rows} | {before:.2f} | {after:.2f} | {accepted:.2f}")


if __name__ == "__main__":
    main()
