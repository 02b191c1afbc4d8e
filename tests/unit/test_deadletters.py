"""The one error path: dead letters, their size, the guard, and confirmed delivery."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from catstream.deadletters import (
    PROCESSING_BUG,
    DeadLetterGuard,
    DeadLetterPolicy,
    DeadLetterProducer,
    Disposition,
    DlqLimit,
    SourceMessage,
    dead_letter_event,
    disposition,
)
from catstream.errors import DeadLetterLimitExceeded, InvalidMessage, RecoverableError
from catstream.settings import Settings
from schemas.events import DeadLetter

SOURCE = SourceMessage("products.raw", 2, 41, b"p1", b'{"product_id": "p1"}')


def _letter(value: bytes, key: bytes | None = b"k") -> DeadLetter:
    return dead_letter_event(
        value=value,
        key=key,
        topic="products.raw",
        partition=0,
        offset=7,
        stage="normalise",
        error_class="InvalidJson",
        reason="fix it",
        max_original_bytes=1000,
    )


def test_a_small_original_is_kept_whole_with_its_length_and_digest() -> None:
    letter = _letter(b"abc")
    assert base64.b64decode(letter.original_b64) == b"abc"
    assert letter.original_length == 3
    assert letter.original_sha256 == hashlib.sha256(b"abc").hexdigest()
    assert not letter.original_truncated


def test_an_original_over_the_limit_is_cut_and_says_so() -> None:
    value = b"x" * 5000
    letter = _letter(value)
    assert base64.b64decode(letter.original_b64) == value[:1000]
    assert letter.original_truncated
    assert letter.original_length == 5000
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()


def test_a_900_kb_message_makes_a_dead_letter_that_fits_the_topic() -> None:
    # Before: base64 of 900 KB is 1.2 MB, over the broker's 1 MB message size.
    settings = Settings()
    policy = DeadLetterPolicy("normalise", settings)
    source = SourceMessage("products.raw", 0, 1, b"p", b"{" * 900_000)
    letter = policy.letter(source, InvalidMessage("bad", error_class="InvalidJson"))
    assert len(letter.value) + len(letter.key or b"") < 1_000_000


def test_a_reason_with_a_lone_surrogate_can_still_be_encoded() -> None:
    policy = DeadLetterPolicy("normalise", Settings())
    letter = policy.letter(SOURCE, InvalidMessage("title: got '\ud800'", error_class="X"))
    assert "\ufffd" in DeadLetter.model_validate_json(letter.value).reason


def test_an_unexpected_exception_is_a_processing_bug_naming_its_last_frame() -> None:
    policy = DeadLetterPolicy("normalise", Settings())

    def explode() -> None:
        raise KeyError("brand")

    try:
        explode()
    except KeyError as exc:
        letter = policy.letter(SOURCE, exc)
    event = DeadLetter.model_validate_json(letter.value)
    assert event.error_class == PROCESSING_BUG
    assert "KeyError" in event.reason
    assert "in explode" in event.reason
    assert "test_deadletters.py" in event.reason
    assert "catstream deadletter replay --reason ProcessingBug" in event.reason
    assert (event.partition, event.offset, event.stage) == (2, 41, "normalise")


def test_recoverable_errors_are_retried_everything_else_is_dead_lettered() -> None:
    assert disposition(RecoverableError("triton", "down")) is Disposition.RETRY
    assert disposition(InvalidMessage("bad")) is Disposition.DEAD_LETTER
    assert disposition(ValueError("bug")) is Disposition.DEAD_LETTER
    with pytest.raises(TypeError):
        DeadLetterPolicy("x", Settings()).letter(SOURCE, RecoverableError("triton", "down"))


def test_guard_trips_on_too_many_bugs_in_a_row() -> None:
    guard = DeadLetterGuard(
        "infer", DlqLimit(max_invalid_ratio=1.0, window=100, max_consecutive_count=3)
    )
    for _ in range(3):
        guard.record_bug()
    with pytest.raises(DeadLetterLimitExceeded, match="4 messages in a row"):
        guard.record_bug()


def test_guard_trips_on_a_ratio_over_the_window_once_the_window_is_full() -> None:
    guard = DeadLetterGuard("normalise", DlqLimit(0.5, window=10, max_consecutive_count=1000))
    for _ in range(4):
        guard.record_ok()
    for _ in range(5):
        guard.record_bug()  # the window is not full yet: no ratio
    guard.record_ok()  # 5 of the last 10 = 50%: at the limit, not over it
    with pytest.raises(DeadLetterLimitExceeded, match="60% of the last 10"):
        guard.record_bug()  # 6 of the last 10


def test_guard_ignores_invalid_input_and_a_success_resets_the_run() -> None:
    settings = Settings(deadletter_max_consecutive=2, deadletter_window=5, deadletter_max_ratio=0.9)
    policy = DeadLetterPolicy("normalise", settings)
    for _ in range(50):  # garbage input is dead-lettered forever without tripping anything
        policy.letter(SOURCE, InvalidMessage("bad", error_class="InvalidJson"))
    policy.letter(SOURCE, ValueError("bug"))
    policy.letter(SOURCE, ValueError("bug"))
    policy.ok()
    policy.letter(SOURCE, ValueError("bug"))


@dataclass
class RecordingProducer:
    """confluent-kafka's Producer surface: delivery reports come on flush()."""

    refuse: int = 0  # refuse the next N deliveries
    produced: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    _reports: list[Any] = field(default_factory=list)

    def produce(self, topic: str, key: bytes | None, value: bytes, on_delivery: Any) -> None:
        self.produced.append((topic, key, value))
        self._reports.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        reports, self._reports = self._reports, []
        for report in reports:
            if self.refuse:
                self.refuse -= 1
                report("MSG_SIZE_TOO_LARGE", None)
            else:
                report(None, None)
        return 0


def test_a_refused_dead_letter_is_not_confirmed_and_is_sent_again() -> None:
    producer = RecordingProducer(refuse=1)
    letters = DeadLetterProducer(
        DeadLetterPolicy("milvus", Settings()), producer, "products.deadletter"
    )
    letters.publish(SOURCE, InvalidMessage("bad", error_class="SchemaViolation"))
    with pytest.raises(RecoverableError, match="MSG_SIZE_TOO_LARGE"):
        letters.confirm()
    assert letters.pending == 1
    letters.confirm()
    assert letters.pending == 0
    assert len(producer.produced) == 2
