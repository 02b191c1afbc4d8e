"""The infer agent's batching on an in-memory harness: a batch that fails for good is
split, its bad product dead-lettered, the rest published, and nothing ever hangs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from catstream.deadletters import DlqLimit
from catstream.liveness import LIVENESS
from catstream.settings import Settings
from schemas.events import DeadLetter, NormalisedProduct, Prediction
from streams.agents import infer as infer_module
from streams.agents.infer import InferAgent
from streams.inference import BatchOutputs
from tests.unit.stream_harness import Event, MemoryApp, MemoryStream, MemoryTopic, Message


def _prediction(product: NormalisedProduct) -> Prediction:
    return Prediction(
        product_id=product.product_id,
        model_name="categoriser",
        model_version="1",
        confidence=0.9,
        uncertainty=0.1,
        needs_review=False,
        fingerprint=product.fingerprint,
    )


class FailingStep:
    """Categorises every product except ``bad``, on which it fails with a bug."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def run(self, products: list[NormalisedProduct], last: Any) -> BatchOutputs:
        self.calls.append([p.product_id for p in products])
        if any(p.product_id == "bad" for p in products):
            raise IndexError("list index out of range")
        out = BatchOutputs()
        for product in products:
            out.predictions.append((product.product_id, _prediction(product)))
            out.last_predictions[product.product_id] = {"fingerprint": product.fingerprint}
        return out


def _event(offset: int, product_id: str) -> Event:
    value = NormalisedProduct(product_id=product_id, title="t", fingerprint="f").model_dump_json()
    return Event(Message("products.normalised", 0, offset, product_id.encode(), value.encode()))


def _agent(step: Any) -> tuple[InferAgent, dict[str, MemoryTopic]]:
    topics = {k: MemoryTopic() for k in ("predictions", "embeddings", "review", "deadletter")}
    agent = InferAgent(MemoryApp(), Settings(), topics=topics, last_predictions={}, step=step)
    return agent, topics


async def _until(condition: Any, timeout_s: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 (the harness has no event to wait on)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


def _consume_until(agent: Any, stream: Any, condition: Any) -> None:
    """Run the agent on ``stream`` until ``condition()`` holds, then cancel it."""

    async def run() -> None:
        consuming = asyncio.ensure_future(agent.consume(stream))
        try:
            await _until(condition)
        finally:
            consuming.cancel()

    asyncio.run(run())


def test_a_batch_that_fails_for_good_is_split_and_its_bad_product_dead_lettered() -> None:
    # Before: the finisher task died on the exception and the agent waited forever.
    step = FailingStep()
    agent, topics = _agent(step)
    stream = MemoryStream([[_event(0, "a"), _event(1, "bad"), _event(2, "c")]])

    _consume_until(agent, stream, lambda: len(stream.acked) == 3)
    assert step.calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert [key for key, _ in topics["predictions"].sent] == [b"a", b"c"]
    (letter,) = [DeadLetter.model_validate_json(v or b"") for _, v in topics["deadletter"].sent]
    assert letter.error_class == "ProcessingBug"
    assert "IndexError" in letter.reason
    assert letter.offset == 1
    assert set(agent.last_predictions) == {"a", "c"}


def test_a_dead_publisher_task_stops_the_process_instead_of_hanging(stops: list[str]) -> None:
    agent, topics = _agent(FailingStep())

    async def broken_send(**_: Any) -> Any:
        raise RuntimeError("producer closed")

    topics["predictions"].send = broken_send  # type: ignore[method-assign]
    stream = MemoryStream([[_event(0, "a")]])

    _consume_until(agent, stream, lambda: bool(stops))
    assert stream.acked == []
    assert "publishing task failed with RuntimeError" in LIVENESS.stopping["infer"]


def test_a_deleted_product_leaves_the_last_prediction_table() -> None:
    class DeletingStep(FailingStep):
        async def run(self, products: list[NormalisedProduct], last: Any) -> BatchOutputs:
            out = BatchOutputs()
            for product in products:
                out.predictions.append((product.product_id, None))
                out.last_predictions[product.product_id] = None
            return out

    agent, _ = _agent(DeletingStep())
    agent.last_predictions["gone"] = {"fingerprint": "f"}
    event = Event(Message("products.normalised", 0, 0, b"gone", None))
    stream = MemoryStream([[event]])

    _consume_until(agent, stream, lambda: len(stream.acked) == 1)
    assert agent.last_predictions == {}


def test_the_guard_tripping_while_taking_events_stops_the_process(
    stops: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_decode(message: Any) -> Any:
        raise UnicodeError("decoder bug")

    monkeypatch.setattr(infer_module, "_decode", broken_decode)
    agent, topics = _agent(FailingStep())
    agent.policy.guard.limit = DlqLimit(1.0, window=1000, max_consecutive_count=1)
    stream = MemoryStream([[_event(0, "a"), _event(1, "b"), _event(2, "c")]])

    _consume_until(agent, stream, lambda: bool(stops))
    assert stream.acked == []
    assert len(topics["deadletter"].sent) == 1  # the second bug tripped the guard
    assert "2 messages in a row" in LIVENESS.stopping["infer"]


def test_an_event_is_acked_only_after_kafka_acknowledged_its_outputs() -> None:
    # Before: the futures of the sends were dropped; a refused prediction was lost while
    # its event was acked (faust's flush before the commit does not fail on it).
    agent, topics = _agent(FailingStep())
    topics["predictions"].refuse.append(RuntimeError("broker went away"))
    stream = MemoryStream([[_event(0, "a"), _event(1, "b")]])

    _consume_until(agent, stream, lambda: len(stream.acked) == 2)
    keys = [key for key, _ in topics["predictions"].sent]
    assert keys == [b"b", b"a", b"b"]  # resent in order from the first refused one
    assert set(agent.last_predictions) == {"a", "b"}
