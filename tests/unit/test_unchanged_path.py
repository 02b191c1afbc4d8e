"""A re-published feed's unchanged products are cheap: they share Triton requests with
the changed ones instead of cutting them small, and write no table changelog."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from catstream.settings import Settings
from schemas.events import NormalisedProduct
from streams.agents.infer import InferAgent
from streams.agents.normalise import NormaliseStep
from streams.inference import BatchOutputs
from tests.unit.stream_harness import (
    Event,
    MemoryApp,
    MemoryStream,
    MemoryTopic,
    Message,
    raw_message,
)


class RecordingStep:
    """Predicts every product; records the products of each call."""

    def __init__(self) -> None:
        self.calls: list[list[NormalisedProduct]] = []

    async def run(self, products: list[NormalisedProduct], last: Any) -> BatchOutputs:
        self.calls.append(products)
        return BatchOutputs()


def _event(offset: int, product_id: str, *, changed: bool) -> Event:
    product = NormalisedProduct(product_id=product_id, fingerprint="f", changed=changed)
    value = product.model_dump_json().encode()
    return Event(Message("products.normalised", 0, offset, product_id.encode(), value))


def test_unchanged_products_ride_along_in_full_triton_batches() -> None:
    # Before: the agent took batch_max_products events at a time, so a re-published feed
    # with 90% unchanged products reached Triton in requests of ~6 products instead of 64.
    settings = Settings(batch_max_products=8, take_max_events=200)
    step: Any = RecordingStep()
    topics = {k: MemoryTopic() for k in ("predictions", "embeddings", "review", "deadletter")}
    agent = InferAgent(MemoryApp(), settings, topics=topics, last_predictions={}, step=step)
    events = [_event(i, f"p{i}", changed=i % 10 == 0) for i in range(200)]
    stream = MemoryStream([events])

    async def run() -> None:
        consuming = asyncio.ensure_future(agent.consume(stream))
        try:
            while len(stream.acked) < len(events):  # noqa: ASYNC110 (no event to wait on)
                await asyncio.sleep(0.01)
        finally:
            consuming.cancel()

    asyncio.run(asyncio.wait_for(run(), 20))
    assert stream.take_max == [200]
    changed_per_call = [sum(p.changed for p in call) for call in step.calls]
    assert changed_per_call == [8, 8, 4]  # 20 changed, at most 8 per request
    assert [p.product_id for call in step.calls for p in call] == [f"p{i}" for i in range(200)]
    assert stream.acked == events  # every event, in the order taken


class CountingTable(dict[str, Any]):
    """A state table that counts writes (each one is a changelog record in faust)."""

    writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


@pytest.mark.parametrize(
    ("refresh", "again"), [(False, "identical"), (True, "unchanged")], ids=["skip", "refresh"]
)
def test_an_unchanged_product_writes_no_changelog_record(refresh: bool, again: str) -> None:
    # Before: every re-published product wrote its (identical) state again. Identical
    # ones are not published at all now; with refresh_identical they flow as unchanged.
    states = CountingTable()
    step = NormaliseStep(Settings(refresh_identical=refresh), states, MemoryTopic(), MemoryTopic())
    product = {"product_id": "p", "title": "Red kettle", "updated_at": 1_700_000_000_000}
    retitled = {**product, "title": "Blue kettle", "updated_at": 1_700_000_000_001}

    async def handle(*values: dict[str, Any]) -> list[str]:
        return [await step.handle(raw_message(i, b"p", v)) for i, v in enumerate(values)]

    outcomes = asyncio.run(handle(product, product, product, retitled, retitled))
    assert outcomes == ["changed", again, again, "changed", again]
    assert states.writes == 2
    assert states["p"]["updated_at"] == 1_700_000_000_001
