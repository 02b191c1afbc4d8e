"""Every hostile case of the broker suite through the normalise step, in memory.

The same messages as tests/integration/test_hostile_input.py (which sends them
through Kafka to a real worker), here on the in-memory harness so a regression
shows in seconds: each message ends with exactly one output, a dead letter with
a reason for a bad one, and the step never raises over a message.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from catstream.settings import Settings
from streams.agents.normalise import NormaliseStep
from tests.integration.hostile_messages import (
    HostileMessage,
    garbage,
    kcat_cases,
    named_cases,
)
from tests.unit.stream_harness import MemoryTopic, raw_message

CASES = named_cases("u") + kcat_cases("u")


def _run(messages: list[HostileMessage]) -> tuple[list[str], MemoryTopic, MemoryTopic]:
    normalised, deadletter = MemoryTopic(), MemoryTopic()
    step = NormaliseStep(Settings(), {}, normalised, deadletter)

    async def run() -> list[str]:
        return [
            await step.handle(raw_message(offset, m.key, m.value))
            for offset, m in enumerate(messages)
        ]

    return asyncio.run(run()), normalised, deadletter


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_each_hostile_message_has_exactly_one_fitting_outcome(
    case: HostileMessage, stops: list[str]
) -> None:
    _, normalised, deadletter = _run([case])
    letters: list[dict[str, Any]] = [json.loads(v or b"{}") for _, v in deadletter.sent]
    outputs = [v for v in normalised.values() if v is not None]
    assert len(letters) + len(outputs) == 1, (case.kind, letters, outputs)
    if case.expect == "dead_letter":
        assert letters, f"{case.kind} was accepted: {outputs}"
    elif case.expect == "product":
        assert outputs, letters
        assert outputs[0]["op"] == "upsert"
    elif case.expect == "delete":
        assert outputs, letters
        assert outputs[0]["op"] == "delete"
    for letter in letters:
        assert letter["reason"].strip()
        assert letter["error_class"] != "ProcessingBug", letter["reason"]
    assert not stops


def test_random_garbage_is_all_dead_lettered(stops: list[str]) -> None:
    messages = list(garbage(random.Random(3), 2000))
    _, normalised, deadletter = _run(messages)
    assert not normalised.sent
    assert len(deadletter.sent) == len(messages)
    assert not stops
