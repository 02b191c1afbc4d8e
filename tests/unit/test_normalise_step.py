"""The normalise step on an in-memory harness: every message ends normalised, stale or
dead-lettered with a reason, and nothing a message contains makes the step raise."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from catstream.liveness import LIVENESS
from catstream.settings import Settings
from schemas.events import DeadLetter
from streams.agents import normalise as normalise_module
from streams.agents.normalise import NormaliseStep, run_normalise
from tests.unit.stream_harness import MemoryTopic, raw_message

NOW_MS = 1_700_000_000_000


def _step(**settings: Any) -> tuple[NormaliseStep, dict[str, Any], MemoryTopic, MemoryTopic]:
    states: dict[str, Any] = {}
    normalised, deadletter = MemoryTopic(), MemoryTopic()
    step = NormaliseStep(
        Settings(**settings), states, normalised, deadletter, clock_ms=lambda: NOW_MS
    )
    return step, states, normalised, deadletter


def _handle(step: NormaliseStep, *messages: Any) -> list[str]:
    async def run() -> list[str]:
        return [await step.handle(message) for message in messages]

    return asyncio.run(run())


def _letters(topic: MemoryTopic) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(value or b"") for _, value in topic.sent]


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b"[" * 5000, "TooDeeplyNested"),  # was RecursionError
        (b'{"product_id": "p", "price": ' + b"9" * 5000 + b"}", "NumberTooLarge"),  # int limit
        (
            b'{"product_id": "p", "extra": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}",
            "TooDeeplyNested",
        ),
        (b'{"product_id": "p", "price": NaN}', "InvalidJson"),
        (b'{"product_id": "\\ud800"}', "InvalidProductId"),
    ],
)
def test_hostile_messages_that_crashed_the_agent_are_dead_lettered(
    value: bytes, error_class: str
) -> None:
    step, _, normalised, deadletter = _step()
    assert _handle(step, raw_message(3, b"p", value)) == ["dead_lettered"]
    (letter,) = _letters(deadletter)
    assert letter.error_class == error_class
    assert letter.offset == 3
    assert letter.stage == "normalise"
    assert normalised.sent == []


def test_a_lone_surrogate_in_a_title_is_repaired_not_fatal() -> None:
    # Before: the JSON encoder refused the surrogate when publishing and the agent crashed.
    step, states, normalised, deadletter = _step()
    value = b'{"product_id": "p", "title": "Hat \\ud800 red"}'
    assert _handle(step, raw_message(0, b"p", value)) == ["changed"]
    (product,) = normalised.values()
    assert product is not None
    assert product["title"] == "Hat \ufffd red"
    assert deadletter.sent == []
    assert "p" in states


def test_a_bug_in_the_normaliser_is_a_processing_bug_and_the_next_message_still_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from normaliser.product import normalise_product as real

    def sometimes_broken(raw: Any, **kwargs: Any) -> Any:
        if raw.product_id == "bad":
            raise ZeroDivisionError("division by zero")
        return real(raw, **kwargs)

    monkeypatch.setattr(normalise_module, "normalise_product", sometimes_broken)
    step, states, _normalised, deadletter = _step()
    outcomes = _handle(
        step,
        raw_message(0, b"bad", {"product_id": "bad", "title": "x"}),
        raw_message(1, b"good", {"product_id": "good", "title": "y"}),
    )
    assert outcomes == ["dead_lettered", "changed"]
    (letter,) = _letters(deadletter)
    assert letter.error_class == "ProcessingBug"
    assert "ZeroDivisionError" in letter.reason
    assert "sometimes_broken" in letter.reason
    assert "bad" not in states  # the failed message changed nothing


def test_updated_at_far_in_the_future_is_dead_lettered_and_does_not_freeze_the_product() -> None:
    step, states, _normalised, deadletter = _step()
    future = NOW_MS + 2 * 86_400_000
    outcomes = _handle(
        step,
        raw_message(0, b"p", {"product_id": "p", "title": "a", "updated_at": future}),
        raw_message(1, b"p", {"product_id": "p", "title": "b", "updated_at": NOW_MS}),
    )
    assert outcomes == ["dead_lettered", "changed"]
    (letter,) = _letters(deadletter)
    assert letter.error_class == "UpdatedAtInFuture"
    assert "CATSTREAM_UPDATED_AT_MAX_SKEW_S" in letter.reason
    assert states["p"]["updated_at"] == NOW_MS


def test_the_skew_is_a_setting() -> None:
    step, _, _, _deadletter = _step(updated_at_max_skew_s=3 * 86_400)
    future = NOW_MS + 2 * 86_400_000
    assert _handle(step, raw_message(0, b"p", {"product_id": "p", "updated_at": future})) == [
        "changed"
    ]


def test_a_deleted_product_leaves_the_state_table() -> None:
    step, states, normalised, _ = _step()
    outcomes = _handle(
        step,
        raw_message(0, b"p", {"product_id": "p", "title": "a", "updated_at": NOW_MS}),
        raw_message(1, b"p", None),
        raw_message(2, b"q", {"product_id": "q", "op": "delete", "updated_at": NOW_MS}),
    )
    assert outcomes == ["changed", "deleted", "deleted"]
    assert states == {}
    assert [v and v["op"] for v in normalised.values()] == ["upsert", "delete", "delete"]


def test_state_bytes_per_product_are_bounded() -> None:
    step, states, _, _ = _step()
    messages = [
        raw_message(
            i, f"p{i}".encode(), {"product_id": f"p{i}", "title": "t", "updated_at": NOW_MS}
        )
        for i in range(100)
    ]
    _handle(step, *messages)
    per_product = sum(len(k) + len(json.dumps(v)) for k, v in states.items()) / len(states)
    # key + {"updated_at": ..., "fingerprint": 64 hex, "digest": 32 hex, "source": [p, offset]}
    # (the digest and source let an identical re-delivery publish nothing: ~60 bytes)
    assert per_product < 200


def test_the_guard_stops_the_process_instead_of_dead_lettering_everything(
    monkeypatch: pytest.MonkeyPatch, stops: list[str]
) -> None:
    def broken(raw: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bad deploy")

    monkeypatch.setattr(normalise_module, "normalise_product", broken)
    step, _, _, deadletter = _step(deadletter_max_consecutive=3)
    messages = [raw_message(i, b"p", {"product_id": "p"}) for i in range(5)]

    async def run() -> list[bool]:
        return [await run_normalise(step, m) for m in messages[:4]]

    assert asyncio.run(run()) == [True, True, True, False]
    assert len(deadletter.sent) == 3  # the fourth is left uncommitted, not dead-lettered
    assert stops == ["stop"]
    assert "4 messages in a row failed with ProcessingBug" in LIVENESS.stopping["normalise"]


def test_a_dead_letter_the_broker_refuses_is_sent_again_before_the_message_counts_as_done() -> None:
    from aiokafka.errors import KafkaTimeoutError

    step, _, _, deadletter = _step()
    deadletter.refuse.append(KafkaTimeoutError())
    assert _handle(step, raw_message(0, b"p", b"{not json")) == ["dead_lettered"]
    assert len(deadletter.sent) == 1


def test_a_product_too_big_to_publish_once_normalised_is_dead_lettered() -> None:
    step, states, normalised, deadletter = _step(max_message_bytes=50_000)
    value = json.dumps({"product_id": "p", "description": "word " * 9_000}).encode()
    assert len(value) < 50_000  # the raw message is within the limit
    assert _handle(step, raw_message(0, b"p", value)) == ["dead_lettered"]
    (letter,) = _letters(deadletter)
    assert letter.error_class == "MessageTooLarge"
    assert normalised.sent == []
    assert states == {}


def test_outputs_are_confirmed_per_batch_and_a_refused_one_is_sent_again_in_order() -> None:
    """Sends are not awaited one by one; ``confirm`` waits for the batch's acks, and
    from the first refused output on, sends the rest again in order (issue 8's rule:
    nothing is acked before Kafka took its output)."""
    from aiokafka.errors import KafkaTimeoutError

    step, _, normalised, _ = _step()
    normalised.refuse.append(KafkaTimeoutError())
    messages = [
        raw_message(i, pid.encode(), {"product_id": pid, "title": f"Toy {pid}"})
        for i, pid in enumerate(["p1", "p2", "p3"])
    ]

    async def run() -> list[bytes | None]:
        for message in messages:
            await step.handle(message)
        before = [key for key, _ in normalised.sent]
        await step.confirm()
        await step.confirm()  # nothing left unconfirmed: returns at once
        return before

    assert asyncio.run(run()) == [b"p2", b"p3"]  # p1 was refused; nothing was awaited yet
    assert [key for key, _ in normalised.sent] == [b"p2", b"p3", b"p1", b"p2", b"p3"]


def _identical_count() -> float:
    from catstream.metrics import EVENTS

    return EVENTS.labels(stage="normalise", outcome="identical")._value.get()


def test_an_identical_re_delivery_publishes_nothing_and_is_counted() -> None:
    step, states, normalised, _ = _step()
    product = {"product_id": "p", "title": "Kite", "price": "9.99", "updated_at": NOW_MS - 10}
    before = _identical_count()
    outcomes = _handle(
        step,
        raw_message(0, b"p", product),
        raw_message(1, b"p", product),  # the same feed again
        raw_message(2, b"p", {**product, "updated_at": NOW_MS}),  # only the time moved
        raw_message(3, b"p", {**product, "updated_at": NOW_MS - 5}),  # older than that
        raw_message(4, b"p", {**product, "price": "8.99", "updated_at": NOW_MS}),
        raw_message(5, b"p", {**product, "title": "Red kite", "updated_at": NOW_MS}),
    )
    assert outcomes == ["changed", "identical", "identical", "stale", "unchanged", "changed"]
    assert _identical_count() == before + 2
    published = [v for v in normalised.values() if v is not None]
    assert [(v["price"], v["title"], v["changed"]) for v in published] == [
        ("9.99", "Kite", True),
        ("8.99", "Kite", False),  # a price-only change still reaches the sinks
        ("9.99", "Red kite", True),
    ]
    # The identical event advanced the newest time, so the older one after it was stale.
    assert states["p"]["updated_at"] == NOW_MS
    assert states["p"]["source"] == [0, 5]


def test_a_re_delivery_of_the_publishing_event_is_published_again() -> None:
    """After a crash between the state write and the commit, the same offset comes again:
    its output may never have reached Kafka, so it must not be skipped."""
    step, _states, normalised, _ = _step()
    product = {"product_id": "p", "title": "Kite", "updated_at": NOW_MS}
    outcomes = _handle(step, raw_message(7, b"p", product), raw_message(7, b"p", product))
    assert outcomes == ["changed", "unchanged"]
    assert len(normalised.sent) == 2


def test_refresh_identical_publishes_identical_records_as_unchanged() -> None:
    step, states, normalised, _ = _step(refresh_identical=True)
    product = {"product_id": "p", "title": "Kite", "updated_at": NOW_MS}
    assert _handle(step, raw_message(0, b"p", product), raw_message(1, b"p", product)) == [
        "changed",
        "unchanged",
    ]
    assert [v and v["changed"] for v in normalised.values()] == [True, False]
    assert states["p"]["source"] == [0, 0]  # the same record: no new state written


def test_a_deleted_then_identical_product_is_published_and_state_rows_without_digest_work() -> None:
    step, states, normalised, _ = _step()
    product = {"product_id": "p", "title": "Kite", "updated_at": NOW_MS}
    outcomes = _handle(
        step,
        raw_message(0, b"p", product),
        raw_message(1, b"p", None),
        raw_message(2, b"p", product),
    )
    assert outcomes == ["changed", "deleted", "changed"]
    states["p"] = {"updated_at": NOW_MS, "fingerprint": states["p"]["fingerprint"]}  # an old row
    assert _handle(step, raw_message(3, b"p", product)) == ["unchanged"]
    assert _handle(step, raw_message(4, b"p", product)) == ["identical"]
    assert len(normalised.sent) == 4
