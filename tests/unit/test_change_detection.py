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


def test_identical_needs_the_same_digest_from_later_in_the_same_partition() -> None:
    state = ProductState(10, "fp", digest="d", source=(1, 40))
    assert judge(state, 11, "fp", "d", (1, 41)) is Verdict.IDENTICAL
    assert judge(state, 10, "fp", "d", (1, 41)) is Verdict.IDENTICAL  # a re-feed, same time
    assert judge(state, 11, "fp", "e", (1, 41)) is Verdict.UNCHANGED  # price or stock moved
    assert judge(state, 11, "xx", "e", (1, 41)) is Verdict.CHANGED
    assert judge(state, 9, "fp", "d", (1, 41)) is Verdict.STALE  # staleness comes first
    # At or before the published event: a re-delivery after a crash, published again.
    assert judge(state, 10, "fp", "d", (1, 40)) is Verdict.UNCHANGED
    assert judge(state, 10, "fp", "d", (1, 3)) is Verdict.UNCHANGED  # topic re-created
    assert judge(state, 11, "fp", "d", (2, 99)) is Verdict.UNCHANGED  # another partition
    assert judge(state, 11, "fp") is Verdict.UNCHANGED  # no digest given (deletes)


def test_rows_from_before_the_digest_are_never_identical() -> None:
    old = ProductState.from_dict({"updated_at": 10, "fingerprint": "fp"})
    assert old == ProductState(10, "fp")
    assert judge(old, 11, "fp", "d", (0, 5)) is Verdict.UNCHANGED
    upgraded = next_state(old, 11, "fp", "d", (0, 5))
    assert upgraded == ProductState(11, "fp", "d", (0, 5))
    assert judge(upgraded, 11, "fp", "d", (0, 6)) is Verdict.IDENTICAL


def test_the_digest_and_source_round_trip_through_the_table_format() -> None:
    state = ProductState(10, "a", digest="d", source=(3, 7))
    assert state.as_dict() == {
        "updated_at": 10,
        "fingerprint": "a",
        "digest": "d",
        "source": [3, 7],
    }
    assert ProductState.from_dict(state.as_dict()) == state


def test_publishing_the_same_record_again_keeps_the_earlier_source() -> None:
    state = ProductState(10, "fp", digest="d", source=(0, 40))
    # A re-delivery (offset 40 again) or a refresh (offset 90): nothing to write.
    assert next_state(state, 10, "fp", "d", (0, 40)) is state
    assert next_state(state, 10, "fp", "d", (0, 90)) is state
    # A newer time or another record moves the source with it.
    assert next_state(state, 12, "fp", "d", (0, 90)) == ProductState(12, "fp", "d", (0, 90))
    assert next_state(state, 10, "fp", "e", (0, 90)) == ProductState(10, "fp", "e", (0, 90))


def test_an_identical_event_only_advances_the_newest_timestamp() -> None:
    from streams.change_detection import advance

    state = ProductState(10, "fp", digest="d", source=(0, 40))
    assert advance(state, 15) == ProductState(15, "fp", "d", (0, 40))
    assert advance(state, None) == state
    assert advance(state, 10) == state
