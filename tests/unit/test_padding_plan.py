"""How MiniLM's sorted sentences are cut into ONNX calls (pure logic, no model)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from triton_models.text_encoder.encoder import GPU_CALL_COST_TOKENS, padding_plan


def _cost(lengths: list[int], runs: list[tuple[int, int]], call_cost: int) -> int:
    return sum((end - start) * lengths[end - 1] + call_cost for start, end in runs)


def _all_plans(n: int, max_rows: int) -> list[list[tuple[int, int]]]:
    plans = []
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *[i + 1 for i, cut in enumerate(cuts) if cut], n]
        runs = list(itertools.pairwise(bounds))
        if all(end - start <= max_rows for start, end in runs):
            plans.append(runs)
    return plans


@pytest.mark.parametrize("seed", range(20))
def test_the_plan_is_the_cheapest_cut_of_the_sorted_run(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    lengths = sorted(int(v) for v in rng.integers(2, 60, n))
    max_rows, call_cost = int(rng.integers(1, 5)), int(rng.integers(0, 20))
    runs = padding_plan(lengths, max_rows, call_cost)
    assert [start for start, _ in runs] == [0, *[end for _, end in runs[:-1]]]
    assert runs[-1][1] == n
    assert all(0 < end - start <= max_rows for start, end in runs)
    cheapest = min(_cost(lengths, plan, call_cost) for plan in _all_plans(n, max_rows))
    assert _cost(lengths, runs, call_cost) == cheapest


def test_equal_lengths_take_the_fewest_calls() -> None:
    runs = padding_plan([30] * 130, 64)
    assert len(runs) == 3
    assert max(end - start for start, end in runs) == 64


def test_short_titles_are_not_padded_to_long_ones() -> None:
    assert padding_plan([10] * 32 + [59] * 32, 64) == [(0, 32), (32, 64)]


def test_on_a_gpu_the_same_titles_go_in_one_call() -> None:
    # Padding 32 rows by 49 tokens (1,568) is cheaper there than a second call.
    assert padding_plan([10] * 32 + [59] * 32, 64, GPU_CALL_COST_TOKENS) == [(0, 64)]


def test_no_sentences_no_calls() -> None:
    assert padding_plan([], 64) == []
