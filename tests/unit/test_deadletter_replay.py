"""Which dead-letter offsets a replay may commit: only past letters it replayed."""

from __future__ import annotations

from schemas.events import DeadLetter
from streams.deadletter_cli import StoredLetter, committable, matches


def _stored(partition: int, offset: int, error_class: str = "InvalidJson") -> StoredLetter:
    letter = DeadLetter(
        original_b64="",
        source_topic="products.raw",
        partition=0,
        offset=0,
        stage="normalise",
        error_class=error_class,
        reason="fix the feed",
    )
    return StoredLetter(partition, offset, letter)


def test_a_letter_left_out_stops_the_commit_of_its_partition() -> None:
    # Before: --reason committed past every letter it did not replay, so they were lost.
    letters = [_stored(0, 10), _stored(0, 11, "KeyMismatch"), _stored(0, 12), _stored(1, 5)]
    chosen = {(s.partition, s.offset) for s in letters if matches(s.letter, "InvalidJson")}
    offsets = {(tp.partition, tp.offset) for tp in committable(letters, chosen)}
    assert offsets == {(0, 11), (1, 6)}


def test_an_unacknowledged_replay_is_not_committed() -> None:
    letters = [_stored(0, 10), _stored(0, 11)]
    assert committable(letters, set()) == []
    assert [(tp.partition, tp.offset) for tp in committable(letters, {(0, 10)})] == [(0, 11)]
