"""Stale, unchanged or changed: the decision the normalise agent makes per event."""

from __future__ import annotations

import pytest

from streams.change_detection import ProductState, Verdict, is_stale, judge, next_state


@pytest.mark.parametrize(
    ("previous", "updated_at", "expected"),
    [
        (None, None, False),
        (None, 5, False),
        (ProductState(None, "f"), None, False),
        (ProductState(None, "f"), 5, False),
        (ProductState(10, "f"), 9, True),
        (ProductState(10, "f"), 10, False),  # a replay of the same version flows through
        (ProductState(10, "f"), 11, False),
        (ProductState(10, "f"), None, True),  # untimed after timed: cannot be newer
    ],
)
def test_is_stale(previous: ProductState | None, updated_at: int | None, expected: bool) -> None:
    assert is_stale(previous, updated_at) == expected


def test_judge() -> None:
    state = ProductState(10, "abc")
    assert judge(None, 1, "abc") is Verdict.CHANGED
    assert judge(state, 11, "abc") is Verdict.UNCHANGED
    assert judge(state, 11, "xyz") is Verdict.CHANGED
    assert judge(state, 9, "xyz") is Verdict.STALE
    assert judge(ProductState(10, None), 11, "abc") is Verdict.CHANGED  # after a delete


def test_next_state_keeps_the_newest_timestamp() -> None:
    assert next_state(None, None, "a") == ProductState(None, "a")
    assert next_state(ProductState(10, "a"), 12, "b") == ProductState(12, "b")
    assert next_state(ProductState(10, "a"), None, "b") == ProductState(10, "b")


def test_state_round_trips_through_the_table_format() -> None:
    state = ProductState(10, "a")
    assert ProductState.from_dict(state.as_dict()) == state
    assert ProductState.from_dict(None) is None


def test_updated_at_beyond_the_skew_is_refused_with_what_to_do() -> None:
    import pytest

    from catstream.errors import InvalidMessage
    from streams.change_detection import check_not_in_future

    day = 86_400_000
    check_not_in_future(None, 0, day)
    check_not_in_future(1000 + day, 1000, day)  # exactly at the limit is fine
    with pytest.raises(InvalidMessage, match="days in the future") as caught:
        check_not_in_future(10**30, 1000, day)  # also an updated_at that overflows int64
    assert caught.value.error_class == "UpdatedAtInFuture"
    with pytest.raises(InvalidMessage, match="before 1970"):
        check_not_in_future(-1, 1000, day)
